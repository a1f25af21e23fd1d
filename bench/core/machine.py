"""Which machine ran: the host's facts, the keys that identify a machine, and the one
answer to "did two runs see the same machine" that compare, the history and the
A/B share.

A machine is its IDENTITY: a stable machine id (hashed: `machine_id`), the CPU's
model name and signature (vendor, family, model, stepping: a VM may name only "AMD
EPYC"), its cores and memory, the devices (kind, count, processes), XLA_FLAGS
and the jax/jaxlib versions (a jaxlib upgrade moves step times as a new machine
would). Two runs saw the same machine when every identity key is equal and each
measured peak (environment.peaks: matmul FLOP/s, copy bandwidth) is within
PEAK_NOISE of the other's: a busy neighbour changes a machine as much as new
hardware does. A report written before the machine id was recorded (`machine_id`
null or absent) is of an unknown machine: two hosts of one CPU model cannot be
told apart, so timing between it and another run stays undecided.

Plain data in, plain data out, no jax: bench/measure/environment.py records the
facts in a report; bench/results reads them back.
"""

import hashlib
import json
import math
import os
import platform
import uuid

IDENTITY = ('machine_id', 'cpu_model', 'cpu_signature', 'cpu_count', 'memory_bytes', 'backend',
            'device_kind', 'device_count', 'process_count', 'xla_flags', 'jax', 'jaxlib')
# Read from the environment block's `versions`, not from its top level.
_VERSIONS = ('jax', 'jaxlib')
# Keys that reports before the machine id lack (bench/results/schema.py accepts their
# absence): null there is not known, not a difference.
LATER = ('machine_id', 'cpu_signature', 'memory_bytes')
# How far a measured peak moves between runs of unchanged code on an unchanged
# machine. Measured on a quiet 2-core VM, 48 processes: of the pairs of processes
# that had the whole machine, 99% were within 1.31x (matmul) and 1.35x (copy); 8
# of the 48 measured half the matmul peak and ran the seed CNN 20-30% slower (a
# neighbour had a core: the machine did change). Beyond this, the machine changed.
PEAK_NOISE = 0.35
UNKNOWN = ('the machine is unknown: a run records no machine id (written by an older '
           'flax-bench), so two hosts of one CPU model cannot be told apart; rerun both on '
           'this version')
# systemd's machine id, and D-Bus's older copy of it where systemd is absent.
_ID_FILES = ('/etc/machine-id', '/var/lib/dbus/machine-id')
# machine-id(5): the id is confidential; an application hashes it with a key of its own.
_ID_SALT = b'flax-bench machine id\n'


def machine_id():
  """This host's id: a sha256 of /etc/machine-id (or D-Bus's copy), salted, never the
  raw id; without either (macOS, a bare container), of the first network interface's
  MAC address. None where neither exists: uuid.getnode() then returns a random
  number per process (its multicast bit set), which would make every run a machine
  of its own. A container without a machine-id file is its own machine (its MAC is
  its own); mounting the host's /etc/machine-id pools its runs with the host's."""
  for path in _ID_FILES:
    try:
      with open(path, 'rb') as f:
        raw = f.read().strip()
    except OSError:
      continue
    if raw:
      return hashlib.sha256(_ID_SALT + raw).hexdigest()[:32]
  node = uuid.getnode()
  if node >> 40 & 1:  # the multicast bit: a random number, not a MAC address
    return None
  return hashlib.sha256(_ID_SALT + b'mac ' + str(node).encode()).hexdigest()[:32]


# /proc/cpuinfo fields that say which silicon a 'model name' is: a VM may show
# only "AMD EPYC" there, and two EPYC generations are two machines.
_SIGNATURE = (('vendor_id', ''), ('cpu family', 'family '), ('model', 'model '),
              ('stepping', 'stepping '), ('CPU implementer', 'implementer '),
              ('CPU part', 'part '), ('CPU variant', 'variant '), ('CPU revision', 'revision '))


def _cpuinfo():
  """The first processor's fields of /proc/cpuinfo ({} off Linux)."""
  fields = {}
  try:
    with open('/proc/cpuinfo', encoding='utf-8') as f:
      for line in f:
        if not line.strip():
          if fields:
            break
          continue
        key, _, value = line.partition(':')
        fields.setdefault(key.strip(), value.strip())
  except OSError:
    pass
  return fields


def cpu_model(fields):
  """The CPU's whole 'model name' line ('AMD EPYC'); off Linux, what platform says."""
  return fields.get('model name') or platform.processor() or platform.machine() or None


def cpu_signature(fields):
  """Which silicon: 'AuthenticAMD family 25 model 17 stepping 1' (x86), 'implementer
  0x41 part 0xd0c ...' (Arm); None off Linux."""
  return ' '.join(f'{label}{fields[key]}' for key, label in _SIGNATURE if fields.get(key)) or None


def memory_bytes():
  """The host's physical memory, bytes (None where the system does not say)."""
  try:
    return os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES')
  except (ValueError, OSError, AttributeError):
    return None


def host():
  """The host's identity keys, for the report's environment block."""
  fields = _cpuinfo()
  return {'machine_id': machine_id(), 'cpu_model': cpu_model(fields),
          'cpu_signature': cpu_signature(fields), 'cpu_count': os.cpu_count(),
          'memory_bytes': memory_bytes()}


def identity(environment):
  """{key: value} of IDENTITY in a report's environment block (null where absent: a
  report of an older version)."""
  versions = environment.get('versions') or {}
  return {key: (versions if key in _VERSIONS else environment).get(key) for key in IDENTITY}


def key(identity_):
  """A machine's key: sha256 of its identity values (the history's machines table)."""
  return hashlib.sha256(json.dumps([identity_.get(k) for k in IDENTITY]).encode()).hexdigest()


def peaks(environment):
  """{label: value} of an environment block's measured peaks: 'matmul float32 peak'
  per dtype, 'copy bandwidth'; {} for a run that did not finish (no peaks)."""
  measured = environment.get('peaks') or {}
  out = {f'matmul {dtype} peak': value
         for dtype, value in (measured.get('matmul_flops_per_s') or {}).items()}
  out['copy bandwidth'] = measured.get('copy_bytes_per_s')
  return out


def peak_moves(base, new):
  """'matmul float32 peak 0.43x' for each peak of {label: value} in both that moved
  beyond PEAK_NOISE."""
  bound = math.log1p(PEAK_NOISE)
  return [f'{label} {new[label] / value:.2f}x' for label, value in base.items()
          if value and new.get(label) and abs(math.log(new[label] / value)) > bound]


def _show(name, value):
  if value is None:
    return 'null'
  return value[:8] if name == 'machine_id' else str(value)


def judge(base, new, base_peaks, new_peaks):
  """Why two runs did not see the same machine, from their identities and {label:
  peak}s: '' when they did; 'the machine changed: cpu_model A -> B; matmul float32
  peak 0.43x' when a key differs or a peak moved; UNKNOWN when nothing differs but a
  run has no machine id."""
  reasons = [f'{k} {_show(k, base[k])} -> {_show(k, new[k])}' for k in IDENTITY
             if base[k] != new[k] and not (k in LATER and None in (base[k], new[k]))]
  reasons += peak_moves(base_peaks, new_peaks)
  if reasons:
    return 'the machine changed: ' + '; '.join(reasons)
  return UNKNOWN if base['machine_id'] is None or new['machine_id'] is None else ''


def change(base, new):
  """`judge` of two reports' environment blocks."""
  return judge(identity(base), identity(new), peaks(base), peaks(new))

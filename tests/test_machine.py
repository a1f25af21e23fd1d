"""The host facts that identify a machine (bench/core/machine.py)."""

import hashlib

from bench.core import machine


def test_the_host_facts_that_identify_a_machine(tmp_path, monkeypatch):
  fields = {'vendor_id': 'AuthenticAMD', 'cpu family': '25', 'model': '17', 'stepping': '1',
            'model name': 'AMD EPYC', 'flags': 'fpu vme'}
  assert machine.cpu_model(fields) == 'AMD EPYC'
  assert machine.cpu_signature(fields) == 'AuthenticAMD family 25 model 17 stepping 1'
  host = machine.host()
  assert host['memory_bytes'] > 1 << 20 and host['cpu_count'] >= 1
  # The id file, hashed with flax-bench's own salt (machine-id(5)): never the raw id.
  raw = '3d1219c7c4c54b6e8f0a5f2d7e9b1c44'
  (tmp_path / 'machine-id').write_text(raw + '\n')
  monkeypatch.setattr(machine, '_ID_FILES', (str(tmp_path / 'none'), str(tmp_path / 'machine-id')))
  assert machine.machine_id() == hashlib.sha256(
      b'flax-bench machine id\n' + raw.encode()).hexdigest()[:32]
  assert raw[:8] not in machine.machine_id()
  # Without one, the MAC address; never the random number uuid gives without a MAC.
  monkeypatch.setattr(machine, '_ID_FILES', (str(tmp_path / 'none'),))
  monkeypatch.setattr(machine.uuid, 'getnode', lambda: 0x0242ac110002)
  assert len(machine.machine_id()) == 32
  monkeypatch.setattr(machine.uuid, 'getnode', lambda: 0x0242ac110002 | 1 << 40)
  assert machine.machine_id() is None

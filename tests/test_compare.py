"""Comparing two reports: deterministic changes, timing verdicts, rendering, exit codes."""

import copy
import json
import re

import numpy as np
import pytest

from bench import compare as compare_cli
from bench.core import machine
from bench.results import compare as compare_lib
from bench.results import formatting
from bench.results import schema as report_lib
from bench.results.compare import Change, Difference
from tests.conftest import call_cli, run_cli
from tests.test_report import _report


# A machine id as bench/core/machine.py writes it (hashed).
_HOST = '5d41402abc4b2a76b9719d911017c592'


def _timed(seed, slowdown=None, n=60):
  """_report() with `n` samples per ok case, lognormal (sigma 5%) around its median
  times slowdown[name] (default 1)."""
  rng = np.random.RandomState(seed)
  report = copy.deepcopy(_report())  # _report() shares test_report._ENV: edit a copy
  report['environment'].update(machine_id=_HOST, memory_bytes=16 << 30)
  for case in report['cases']:
    if case['status'] == 'ok':
      median = case['step_time_s']['median'] * (slowdown or {}).get(case['name'], 1)
      case['step_time_s']['samples'] = (median * np.exp(rng.normal(0, 0.05, n))).tolist()
  return report


def _timing(result):
  return {t.case: t for t in result['timing']}


def _write(path, report):
  path.write_text(json.dumps(report))
  return str(path)


def test_identical_reports_are_all_noise():
  base = _timed(0)
  result = compare_lib.compare(base, copy.deepcopy(base))
  assert compare_lib.exit_status(result) == 0
  assert result['changes'] == [] and result['environment'] == []
  assert result['missing'] == [] and result['new'] == []
  assert result['compared'] == 3  # mlp, cnn and the failed big, untimed
  timing = _timing(result)
  assert sorted(timing) == ['cnn', 'mlp']
  assert {(t.ratio, t.p, t.n_base, t.n_new, t.verdict) for t in timing.values()} == {
      (1.0, 1.0, 60, 60, 'noise')}
  md = compare_lib.render(result)
  assert '**0 regressions, 0 deterministic changes**, 3 cases compared, 2 noise\n' in md
  assert 'Differences: none.' in md and '### Deterministic changes\n\nNone.' in md


def test_planted_slowdown_is_a_regression():
  result = compare_lib.compare(_timed(0), _timed(1, {'cnn': 2.0}))
  timing = _timing(result)
  assert timing['cnn'].verdict == 'regression'
  assert timing['cnn'].ratio == pytest.approx(2.0, rel=0.03)
  assert timing['cnn'].p < 1e-10
  assert timing['mlp'].verdict == 'noise'
  assert compare_lib.exit_status(result) == 1
  # Advisory timing: still a regression in the result, but not a failure.
  assert compare_lib.exit_status(result, timing_gates=False) == 0
  speedup = compare_lib.compare(_timed(0), _timed(1, {'cnn': 0.5}))
  assert _timing(speedup)['cnn'].verdict == 'faster'
  assert compare_lib.exit_status(speedup) == 0


def test_small_shift_is_noise():
  result = compare_lib.compare(_timed(0), _timed(1, {'cnn': 1.03}))
  cnn = _timing(result)['cnn']
  assert cnn.ratio == pytest.approx(1.03, abs=0.02)
  assert (cnn.verdict, cnn.note) == ('noise', '')
  assert compare_lib.exit_status(result) == 0
  # It takes both a threshold below the shift and a looser alpha to call it a regression.
  for threshold, alpha, verdict in ((0.01, 0.01, 'noise'), (0.1, 0.05, 'noise'),
                                    (0.01, 0.05, 'regression')):
    shifted = compare_lib.compare(_timed(0), _timed(1, {'cnn': 1.03}), threshold, alpha)
    assert _timing(shifted)['cnn'].verdict == verdict, (threshold, alpha)


def test_too_few_samples_and_untimed_cases():
  base, new = _timed(0, n=4), _timed(1, {'cnn': 2.0}, n=4)
  new['cases'][0]['step_time_s']['samples'] = None  # mlp compile-only in NEW: not timed
  result = compare_lib.compare(base, new)
  assert list(_timing(result)) == ['cnn']
  cnn = _timing(result)['cnn']
  assert (cnn.verdict, cnn.note, cnn.p, cnn.n_base) == ('noise', 'too few samples', None, 4)
  assert cnn.ratio == pytest.approx(2.0, rel=0.1)
  assert compare_lib.exit_status(result) == 0
  assert (f'| {cnn.ratio:.3f} | {cnn.ratio:.3f} (memory) | n/a | 4/4 | noise (too few samples) |'
          in compare_lib.render(result))


def test_changed_parameter_count_is_listed():
  base = _timed(0)
  new = copy.deepcopy(base)
  new['cases'][0]['params']['trainable'] = 401
  result = compare_lib.compare(base, new)
  assert result['changes'] == [Change('mlp', 'params.trainable', 400, 401)]
  assert compare_lib.exit_status(result) == 1
  assert compare_lib.exit_status(result, timing_gates=False) == 1
  md = compare_lib.render(result)
  assert '**0 regressions, 1 deterministic change**' in md
  assert '| mlp | params.trainable | 400 | 401 |' in md


def test_exact_figures_and_measured_ones():
  base = _timed(0)
  new = copy.deepcopy(base)
  mlp, cnn = new['cases'][:2]
  mlp['xla_forward']['flops'] = 5.0  # null in BASE
  cnn['memory']['temp_bytes'] = 1024
  # Measured or host-dependent: never a change.
  mlp['memory'].update(generated_code_bytes=9999, device_peak_bytes=1, host_peak_rss_bytes=2)
  mlp['fingerprint'] = 'f' * 64
  assert compare_lib.compare(base, new)['changes'] == [
      Change('mlp', 'xla_forward.flops', None, 5.0), Change('cnn', 'memory.temp_bytes', None, 1024)]


def test_ok_case_that_failed_shows_its_error():
  base = _timed(0)
  new = copy.deepcopy(base)
  new['cases'][1].update(status='failed', error='XlaRuntimeError: RESOURCE_EXHAUSTED\ndetails')
  new['cases'][1]['params']['total'] = None  # not measured: the status says it all
  result = compare_lib.compare(base, new)
  assert result['changes'] == [Change('cnn', 'status', 'ok',
                                      'failed: XlaRuntimeError: RESOURCE_EXHAUSTED')]
  assert compare_lib.exit_status(result) == 1


def test_environment_differences_come_first():
  base = _timed(0)
  new = copy.deepcopy(base)
  env = new['environment']
  env['versions']['jax'] = '0.10.3'
  env['versions']['flax_bench'] = '0.2.0'  # the harness: an installed copy has no commit
  env.update(cpu_model='other cpu', git_commit='9876543210fedcba', git_dirty=False, hostname='h2')
  env['peaks']['copy_bytes_per_s'] = 1.5e10
  result = compare_lib.compare(base, new)
  assert result['environment'] == [Difference('versions.flax_bench', '0.1.0', '0.2.0'),
                                   Difference('versions.jax', '0.10.2', '0.10.3'),
                                   Difference('cpu_model', 'test cpu', 'other cpu')]
  peaks = {p.key: p.ratio for p in result['peaks']}
  assert peaks == {'peaks.matmul_flops_per_s.float32': 1.0, 'peaks.copy_bytes_per_s': 1.5}
  assert compare_lib.exit_status(result) == 0  # the environment explains, it does not fail
  md = compare_lib.render(result)
  assert md.index('| versions.jax | 0.10.2 | 0.10.3 |') < md.index('### Deterministic changes')
  assert ('base: commit abcdef0123 (dirty) on h; new: commit 9876543210 on h2') in md
  assert '| peaks.copy_bytes_per_s | 1e+10 | 1.5e+10 | 1.500 |' in md


def test_a_changed_machine_makes_timing_inconclusive():
  # The second run on a busy machine: every step 2x slower, the matmul peak 0.43x.
  base, new = _timed(0), _timed(1, {'cnn': 2.0, 'mlp': 2.0})
  new['environment']['peaks']['matmul_flops_per_s']['float32'] *= 0.43
  result = compare_lib.compare(base, new)
  assert result['machine'] == 'the machine changed: matmul float32 peak 0.43x'
  timing = _timing(result)
  assert {t.verdict for t in timing.values()} == {'inconclusive'}
  assert timing['cnn'].note == 'the machine changed: matmul float32 peak 0.43x'
  assert compare_lib.exit_status(result) == 0
  md = compare_lib.render(result)
  assert ('**0 regressions, 0 deterministic changes**, 3 cases compared, 0 noise, '
          '2 inconclusive') in md
  assert 'The machine changed: matmul float32 peak 0.43x. Timing verdicts are inconclusive.' in md
  # Another CPU model: the same, whatever the peaks say.
  new = _timed(1, {'cnn': 2.0})
  new['environment']['cpu_model'] = 'other cpu'
  result = compare_lib.compare(base, new)
  assert result['machine'] == 'the machine changed: cpu_model test cpu -> other cpu'
  assert _timing(result)['cnn'].verdict == 'inconclusive'


def test_two_hosts_of_one_model_are_two_machines():
  """Issue 37's two hosts: one CPU model, peaks 0.85x (inside the guard), the second
  host 30% slower. Only the machine id tells them apart; without it, nothing can."""
  base, new = _timed(0), _timed(1, {'cnn': 1.3, 'mlp': 1.3})
  new['environment']['peaks']['matmul_flops_per_s']['float32'] *= 0.85
  assert _timing(compare_lib.compare(base, copy.deepcopy(new)))['cnn'].verdict == 'regression'
  new['environment']['machine_id'] = '7cf3931855be5eefc4ecaf7386586eb6'
  result = compare_lib.compare(base, new)
  assert result['machine'] == 'the machine changed: machine_id 5d41402a -> 7cf39318'
  assert {t.verdict for t in result['timing']} == {'inconclusive'}
  assert _timing(result)['cnn'].note == result['machine']
  assert Difference('machine_id', _HOST, '7cf3931855be5eefc4ecaf7386586eb6') in result[
      'environment']
  # The same id and hardware, a peak 1.36x: beyond machine.PEAK_NOISE (35%), changed.
  new = _timed(1, {'cnn': 1.3})
  new['environment']['peaks']['copy_bytes_per_s'] *= 1.36
  assert compare_lib.compare(base, new)['machine'] == (
      'the machine changed: copy bandwidth 1.36x')


def test_a_report_without_a_machine_id_is_of_an_unknown_machine(tmp_path):
  """A schema-11 report written before the machine id (the committed CI baseline is
  one): still read and compared; its deterministic figures judged as ever, its
  timing inconclusive, said once."""
  base, new = _timed(0), _timed(1, {'cnn': 2.0})
  for key in ('machine_id', 'memory_bytes'):
    del base['environment'][key]
  report_lib.validate(base)
  new['cases'][0]['params']['total'] += 1
  result = compare_lib.compare(base, new)
  assert result['machine'] == machine.UNKNOWN
  assert [c.figure for c in result['changes']] == ['params.total']
  assert {t.verdict for t in result['timing']} == {'inconclusive'}
  assert compare_lib.exit_status(result) == 1  # the change, not the timing
  cli = call_cli(_write(tmp_path / 'base.json', base), _write(tmp_path / 'new.json', new),
                 '--format=text', module='bench.compare')
  assert cli.returncode == 1, cli.stderr
  assert ('The machine is unknown: a run records no machine id (written by an older '
          'flax-bench), so two hosts of one CPU model cannot be told apart; rerun both on '
          'this version. Timing verdicts are inconclusive.') in cli.stdout
  # Both without one: as unknown; a hardware difference is still a change.
  del new['environment']['machine_id']
  assert compare_lib.compare(base, new)['machine'] == machine.UNKNOWN
  new['environment']['cpu_count'] = 64
  assert compare_lib.compare(base, new)['machine'] == 'the machine changed: cpu_count 2 -> 64'


def test_peaks_within_their_noise_keep_the_verdict_and_normalise_the_ratio():
  # The test cases are memory-bound on the test peaks: bandwidth 1.3x (within noise).
  base, new = _timed(0), _timed(1, {'cnn': 2.0})
  new['environment']['peaks']['copy_bytes_per_s'] *= 1.3
  result = compare_lib.compare(base, new)
  assert result['machine'] == ''
  cnn = _timing(result)['cnn']
  assert cnn.verdict == 'regression' and cnn.bound == 'memory'
  assert cnn.normalised == pytest.approx(cnn.ratio * 1.3)
  new['environment']['peaks']['copy_bytes_per_s'] *= 1.1  # 1.43x: beyond
  assert _timing(compare_lib.compare(base, new))['cnn'].verdict == 'inconclusive'


def test_a_run_that_did_not_finish_has_no_peaks():
  base = _timed(0)
  new = copy.deepcopy(base)
  new['environment']['peaks'] = None  # measured after the last case
  result = compare_lib.compare(base, new)
  assert [(p.key, p.new, p.ratio) for p in result['peaks']] == [
      ('peaks.matmul_flops_per_s.float32', None, None), ('peaks.copy_bytes_per_s', None, None)]
  assert '| peaks.copy_bytes_per_s | 1e+10 | null | n/a |' in compare_lib.render(result)
  assert compare_lib.exit_status(result) == 0


def test_missing_and_new_cases():
  base = _timed(0)
  new = copy.deepcopy(base)
  new['cases'][1]['name'] = 'cnn2'
  result = compare_lib.compare(base, new)
  assert (result['missing'], result['new'], result['compared']) == (['cnn'], ['cnn2'], 2)
  # A case the new run lost fails, even with advisory timing; a new one alone does not.
  assert compare_lib.exit_status(result, timing_gates=False) == 1
  new['cases'].append(copy.deepcopy(base['cases'][1]))
  assert compare_lib.exit_status(compare_lib.compare(base, new)) == 0
  for fmt in ('md', 'text'):
    text = compare_lib.render(result, fmt)
    assert '2 cases compared, 1 noise, 1 missing, 1 new' in text
    assert 'Missing (only in BASE): cnn\n' in text and 'New (only in NEW): cnn2\n' in text


def test_markdown_and_text_render_the_same_table():
  result = compare_lib.compare(_timed(0), _timed(1, {'cnn': 2.0}))
  cnn = _timing(result)['cnn']
  cells = [formatting.fmt(cnn.base_median, 1e3), formatting.fmt(cnn.new_median, 1e3),
           f'{cnn.ratio:.3f}']
  assert cells == ['50.4', '101', '2.001']
  md = compare_lib.render(result, 'md')
  assert md.startswith('## Benchmark comparison\n\n**1 regression, 0 deterministic changes**')
  assert ('| case | base ms | new ms | new/base | normalised | p | n base/new | verdict |\n'
          '|---|---|') in md
  assert f'| cnn | {" | ".join(cells)} | 2.001 (memory) | 3.6e-21 | 60/60 | regression |' in md
  text = compare_lib.render(result, 'text').splitlines()
  header = next(line for line in text if line.startswith('case  base ms'))
  row = next(line for line in text if line.startswith('cnn '))
  assert row.index('regression') == header.index('verdict')
  assert row.split() == ['cnn'] + cells + ['2.001', '(memory)', '3.6e-21', '60/60', 'regression']
  assert not any(line.startswith('|') for line in text)


@pytest.mark.fast
def test_cli_exit_codes_and_advisory_timing(tmp_path):
  base = _write(tmp_path / 'base.json', _timed(0))
  new = _write(tmp_path / 'new.json', _timed(1, {'cnn': 2.0}))
  gated = run_cli(base, new, module='bench.compare')
  assert gated.returncode == 1, gated.stderr
  assert re.search(r'^\| cnn \| .* \| regression \|$', gated.stdout, re.M), gated.stdout
  advisory = call_cli(base, new, '--timing=advisory', '--format=text', module='bench.compare')
  assert advisory.returncode == 0, advisory.stderr
  assert advisory.stdout.startswith('Benchmark comparison: 1 regression, 0 deterministic')
  assert re.search(r'^cnn .* regression$', advisory.stdout, re.M), advisory.stdout


def test_cli_truncated_report_names_the_file(tmp_path):
  base = _write(tmp_path / 'base.json', _timed(0))
  truncated = tmp_path / 'new.json'
  truncated.write_text(json.dumps(_timed(1))[:500])
  result = call_cli(base, str(truncated), module='bench.compare')
  assert result.returncode == 2, result.stderr
  assert result.stdout == '' and len(result.stderr.splitlines()) == 1, result.stderr
  assert result.stderr.startswith(f'error: {truncated}: not valid JSON'), result.stderr
  assert 'cut short' in result.stderr


def test_threshold_flag(tmp_path):
  base = _write(tmp_path / 'base.json', _timed(0))
  new = _write(tmp_path / 'new.json', _timed(1, {'cnn': 2.0}))
  assert compare_cli.main([base, new, '--format=text']) == 1
  assert compare_cli.main([base, new, '--threshold=150%']) == 0
  assert compare_cli.main([base, new, '--threshold=1.5']) == 0
  assert compare_cli.main([base, new, '--threshold=0.5']) == 1


def _schema(edit, version=report_lib.SCHEMA_VERSION):
  report = copy.deepcopy(_report())
  report['schema_version'] = version
  edit(report)
  return json.dumps(report)


def _drop_flops(report):
  del report['cases'][0]['xla']['flops']


def _drop_commit(report):
  del report['environment']['git_commit']


def _text_sample(report):
  report['cases'][0]['step_time_s']['samples'] = [0.001, '0.002']


# File contents (None: no file) and the error expected after the file's name.
@pytest.mark.parametrize('text, message', [
    (_schema(lambda report: None, version=5),
     r'schema_version 5 is not one of 11, 12.*rerun the benchmark'),
    ('[1, 2]', r'not a benchmark report \(no schema_version\)'),
    ('{}', r'not a benchmark report \(no schema_version\)'),
    (_schema(_drop_flops), r"case 'mlp' xla keys differ .*missing \['flops'\]"),
    (_schema(_drop_commit), r"environment keys differ .*missing \['git_commit'\]"),
    (_schema(_text_sample), r"case 'mlp' step_time_s.samples is not a list of numbers"),
    (b'\x89PNG\r\n\x1a\n\xff\xfe', r'not a text file, so not a report'),
    (None, r'cannot read it: No such file or directory'),
], ids=['old schema', 'list', 'empty object', 'schema drift', 'environment drift',
        'text sample', 'binary', 'missing'])
def test_unusable_report_is_one_line_and_exit_2(tmp_path, capsys, text, message):
  path = tmp_path / 'base.json'
  if isinstance(text, bytes):
    path.write_bytes(text)
  elif text is not None:
    path.write_text(text)
  new = _write(tmp_path / 'new.json', _timed(0))
  with pytest.raises(SystemExit) as exit_:
    compare_cli.main([str(path), new])
  assert exit_.value.code == 2
  out, err = capsys.readouterr()
  assert out == '' and len(err.splitlines()) == 1, err
  assert re.match(rf'error: {re.escape(str(path))}: {message}', err), err


@pytest.mark.parametrize('flag, message', [
    ('--threshold=abc', "argument --threshold: 'abc' is not a fraction >= 0"),
    ('--threshold=-5%', "argument --threshold: '-5%' is not a fraction >= 0"),
    ('--alpha=2', "argument --alpha: '2' is not a probability between 0 and 1"),
    ('--format=html', 'argument --format: invalid choice'),
])
def test_bad_flag_is_one_line_and_exit_2(tmp_path, capsys, flag, message):
  base = _write(tmp_path / 'base.json', _timed(0))
  with pytest.raises(SystemExit) as exit_:
    compare_cli.main([base, base, flag])
  assert exit_.value.code == 2
  err = capsys.readouterr().err
  assert len(err.splitlines()) == 1 and err.startswith(f'error: {message}'), err


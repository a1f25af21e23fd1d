"""The parameter-vs-runtime analysis on synthetic reports whose answers are known."""

import json
import os

import numpy as np
import pytest

from bench.results import analysis
from bench.results import fits
from bench.results import formatting
from bench.results import schema as report_lib
from bench.results import significance
from bench.results import writer
from tests.conftest import call_cli, run_cli
from tests.test_report import _ENV, _case

# Peaks of the synthetic device: 100 GFLOP/s, 10 GB/s.
_PEAK_FLOPS, _BANDWIDTH = 1e11, 1e10


def _report(specs):
  """A report of ok train-step cases from (name, params, flops, bytes, seconds)."""
  cases = []
  for name, params, flops, nbytes, seconds in specs:
    case = _case(name, params, flops, seconds)
    case['xla']['bytes_accessed'] = nbytes
    case['memory'].update(activation_bytes=nbytes // 4, temp_bytes=nbytes // 2)
    cases.append(case)
  env = {**_ENV, 'peaks': {**_ENV['peaks'], 'matmul_flops_per_s': {'float32': _PEAK_FLOPS},
                           'copy_bytes_per_s': _BANDWIDTH}}
  return report_lib.build('synthetic', 'configs/t.py', env, cases, [])


def _row(result, key):
  return next(r for r in result['proxies'] + result['predictors'] if r['proxy'] == key)


def test_a_power_law_in_flops_is_found_exactly_and_params_are_not():
  rng = np.random.RandomState(0)
  flops = np.geomspace(1e6, 1e10, 8)
  params = rng.permutation(np.geomspace(1e3, 1e7, 8)).astype(int)
  seconds = 3e-9 * flops**0.8
  result = analysis.analyze(_report(
      [(f'm{i}', int(p), f, 1e6, t) for i, (p, f, t) in enumerate(zip(params, flops, seconds))]))
  by_flops = _row(result, 'flops')
  assert by_flops['n'] == 8
  assert by_flops['spearman'] == pytest.approx(1.0)
  assert by_flops['pearson_log'] == pytest.approx(1.0)
  assert by_flops['r2_log'] == pytest.approx(1.0)
  assert by_flops['slope'] == pytest.approx(0.8)
  # A log-log fit on the other seven predicts each left-out case exactly.
  assert by_flops['fold_error'] == pytest.approx(1.0)
  by_params = _row(result, 'params')
  expected_rho = np.corrcoef(np.argsort(np.argsort(params)), np.arange(8))[0, 1]
  assert by_params['spearman'] == pytest.approx(expected_rho)
  assert by_params['r2_log'] == pytest.approx(
      np.corrcoef(np.log(params), np.log(seconds))[0, 1]**2)
  assert by_params['fold_error'] > 2
  # Bytes are the same for every case: no correlation can be computed.
  assert _row(result, 'bytes')['spearman'] is None
  assert _row(result, 'bytes')['r2_log'] is None


def test_roofline_prediction_bound_and_error_per_case():
  result = analysis.analyze(_report([
      # 1 GFLOP over 100 GFLOP/s = 10 ms compute; 1 MB over 10 GB/s = 0.1 ms: compute-bound.
      ('compute', 1000, 1e9, 1e6, 0.020),
      # 1 MFLOP = 0.01 ms; 100 MB = 10 ms: memory-bound, measured at the roofline.
      ('memory', 2000, 1e6, 1e8, 0.010),
      ('both', 3000, 1e9, 1e8, 0.040),
      ('small', 4000, 1e7, 1e7, 0.004),
  ]))
  cases = {c['name']: c for c in result['cases']}
  assert cases['compute']['roofline_s'] == pytest.approx(0.010)
  assert cases['compute']['bound'] == 'compute'
  assert cases['compute']['measured_over_roofline'] == pytest.approx(2.0)
  assert cases['memory']['roofline_s'] == pytest.approx(0.010)
  assert cases['memory']['bound'] == 'memory'
  assert cases['memory']['measured_over_roofline'] == pytest.approx(1.0)
  assert cases['both']['measured_over_roofline'] == pytest.approx(4.0)
  assert cases['small']['roofline_s'] == pytest.approx(0.001)
  # Fold errors 2, 1, 4, 4: median 3.
  assert _row(result, 'roofline')['fold_error'] == pytest.approx(3.0)
  lines = '\n'.join(analysis.markdown(result))
  assert '2 of 4 cases are memory-bound' in lines
  assert 'a median 3.00x the roofline time (from 1.00x to 4.00x)' in lines


def test_two_term_fit_recovers_its_coefficients_and_predicts_left_out_cases():
  a, b = 2e-11, 3e-10  # 50 GFLOP/s and 3.3 GB/s effective
  rng = np.random.RandomState(1)
  flops, nbytes = rng.uniform(1e8, 1e10, 7), rng.uniform(1e6, 1e8, 7)
  result = analysis.analyze(_report(
      [(f'm{i}', 1000 * (i + 1), f, n, a * f + b * n) for i, (f, n) in enumerate(zip(flops,
                                                                                     nbytes))]))
  assert result['two_term']['a_s_per_flop'] == pytest.approx(a, rel=1e-6)
  assert result['two_term']['b_s_per_byte'] == pytest.approx(b, rel=1e-6)
  assert _row(result, 'two_term')['n'] == 7
  assert _row(result, 'two_term')['fold_error'] == pytest.approx(1.0)
  for case in result['cases']:
    assert case['two_term_s'] == pytest.approx(case['time'], rel=1e-6)


def test_verdict_names_where_parameters_mislead_and_inverted_pairs():
  result = analysis.analyze(_report([
      ('tiny_slow', 1_000, 1e10, 1e8, 1.0),  # few parameters, slowest
      ('a', 10_000, 1e7, 1e6, 0.001),
      ('b', 100_000, 1e8, 1e7, 0.01),
      ('c', 1_000_000, 1e9, 1e8, 0.1),
      ('huge_fast', 10_000_000, 1e6, 1e6, 0.0001),  # most parameters, fastest
  ]))
  pairs = result['inverted_pairs']
  assert (pairs[0]['case'], pairs[0]['other']) == ('tiny_slow', 'huge_fast')
  assert pairs[0]['params_ratio'] == pytest.approx(1e-4)
  assert pairs[0]['time_ratio'] == pytest.approx(1e4)
  text = '\n'.join(analysis.markdown(result))
  assert text.startswith('## Does parameter count predict step time?')
  assert '**Where parameters mislead most**' in text
  assert 'tiny_slow has 0.000100x the parameters of huge_fast and takes 10000x its time' in text
  # The first case named is the one a log-log fit on the other four predicts worst.
  params, seconds = np.array([1e3, 1e4, 1e5, 1e6, 1e7]), np.array([1.0, 1e-3, 1e-2, 0.1, 1e-4])
  folds = []
  for i in range(5):
    keep = np.arange(5) != i
    slope, intercept = np.polyfit(np.log(params[keep]), np.log(seconds[keep]), 1)
    predicted = np.exp(intercept + slope * np.log(params[i]))
    folds.append((max(predicted / seconds[i], seconds[i] / predicted), i, predicted))
  _, worst, predicted = max(folds)
  name = ['tiny_slow', 'a', 'b', 'c', 'huge_fast'][worst]
  mislead = text.split('**Where parameters mislead most**')[1].splitlines()[1]
  assert mislead.startswith(f'  - {name}: {int(params[worst]):,} parameters predict '
                            f'{formatting.fmt(predicted * 1e3)} ms; it takes ')


def test_too_few_cases_no_analysis_and_other_cases_are_left_out():
  report = _report([('a', 1, 1e6, 1e6, 0.001), ('b', 2, 1e7, 1e6, 0.002),
                    ('c', 3, 1e8, 1e6, 0.003), ('diverged', 4, 1e9, 1e6, 0.004),
                    ('input', 5, 1e9, 1e6, 0.005)])
  # A diverged case and an input-only case have step times, but no say here.
  report['cases'][3]['status'] = 'diverged'
  report['cases'][4]['config']['benchmark'] = 'input'
  report['cases'].append(report_lib.new_case('broken', {'model': 'x'}))
  assert [p['name'] for p in analysis.points(report)] == ['a', 'b', 'c']
  assert analysis.analyze(report) is None
  assert analysis.markdown(None) == []


def test_degenerate_reports_render_and_write(tmp_path):
  # Parameter counts clustered within 0.01% except one: leaving that one out, the
  # log-log fit of the rest is refused rather than extrapolated to infinity.
  report = _report([('p1', 100_000, 1e8, 1e6, 0.010), ('p2', 100_010, 1e9, 1e7, 0.080),
                    ('p3', 100_000, 1e8, 1e7, 0.020), ('far', 10_000_000, 1e7, 1e6, 0.001),
                    ('bf16', 100_005, 1e8, 1e6, 0.005)])
  far = report['cases'][3]
  far['memory']['activation_bytes'] = 0  # no proxy: left out of that row
  report['cases'][4]['config']['dtype'] = 'bfloat16'  # no measured peak: no roofline
  untimed = report_lib.new_case('zoo', {'model': 'x', 'benchmark': 'compile'})
  untimed['status'] = 'ok'
  report['cases'].append(untimed)
  result = analysis.analyze(report)
  cases = {c['name']: c for c in result['cases']}
  assert sorted(cases) == ['bf16', 'far', 'p1', 'p2', 'p3']
  assert cases['far']['params_fit_s'] is None
  assert cases['bf16']['roofline_s'] is None and cases['bf16']['bound'] is None
  assert _row(result, 'activations')['n'] == 4
  assert _row(result, 'roofline')['n'] == 4
  json.dumps(result, allow_nan=False)
  writer.write(str(tmp_path), report, analysis.markdown(result))
  md = (tmp_path / 'report.md').read_text()
  far_row, = [line for line in md.splitlines() if line.startswith('| far | 10,000,000 |')]
  assert far_row.endswith(' | n/a |')  # no prediction from the parameter count


def test_a_wild_fit_gives_finite_numbers():
  assert fits.fold_error(1e-300, 1.0) == pytest.approx(1e300)
  assert fits.fold_error(0.0, 1.0) is None and fits.fold_error(None, 1.0) is None
  assert fits.loglog_predict((1000.0, 0.0), 10.0) == pytest.approx(np.exp(700))
  assert formatting.fmt(float('inf')) == 'inf' and formatting.fmt(float('nan')) == 'n/a'
  assert formatting.fmt(np.exp(700)) == '1.01e+304'
  assert formatting.fmt(123_456_789_012) == '123456789012'


@pytest.mark.fast
def test_cli_json_plots_and_errors(tmp_path):
  flops = np.geomspace(1e6, 1e9, 5)
  report = _report([(f'm{i}', 10 * (i + 1), f, 1e6, f / 1e10) for i, f in enumerate(flops)])
  path = tmp_path / 'report.json'
  path.write_text(json.dumps(report))
  result = run_cli(str(path), '--format=json', f'--plots={tmp_path / "plots"}',
                   module='bench.analysis')
  assert result.returncode == 0, result.stderr
  out = json.loads(result.stdout)
  assert [r['proxy'] for r in out['proxies']] == [key for key, _, _ in analysis.PROXIES]
  assert sorted(os.listdir(tmp_path / 'plots')) == ['proxies.png', 'roofline.png']
  result = call_cli(str(path), f'--plots={path / "plots"}', module='bench.analysis')
  assert result.returncode == 2 and result.stdout == ''
  assert result.stderr == (f'error: --plots={path / "plots"}: cannot write the plots there '
                           '(Not a directory); name a writable directory\n')
  path.write_text(json.dumps(report)[:200])
  result = call_cli(str(path), module='bench.analysis')
  assert result.returncode == 2
  line, = result.stderr.strip().splitlines()
  assert line.startswith(f'error: {path}: not valid JSON (')
  assert line.endswith('so this file was cut short or is not a report')


def test_verdict_when_parameters_cannot_be_correlated():
  specs = [(f'm{i}', 1_000, 10.0**(6 + i), 1e6, 10.0**(i - 3)) for i in range(4)]
  text = '\n'.join(analysis.markdown(analysis.analyze(_report(specs))))
  assert ('\n- **Parameter count** does not vary over these cases: it cannot predict their '
          'step times.\n- The best single proxy here is **XLA FLOPs**: R^2 = 1.00') in text
  report = _report(specs)
  for case in report['cases'][2:]:
    case['params']['total'] = None
  text = '\n'.join(analysis.markdown(analysis.analyze(report)))
  assert ('\n- **Parameter count** is known for 2 of these cases: too few to correlate with '
          'step time.\n') in text


def test_a_proxy_pointing_the_wrong_way_is_named_and_never_the_best():
  # Parameters fall exactly as time rises (R^2 = 1, slope -1); FLOPs rise with time,
  # but not exactly (R^2 < 1): FLOPs are the best proxy, parameters point the wrong way.
  flops = np.geomspace(1e7, 1e10, 5) * np.array([1.0, 1.5, 0.8, 1.2, 1.0])
  seconds = np.geomspace(1e-3, 1.0, 5)
  specs = [(f'm{i}', int(1e9 * t**-1 / 1e3), f, 1e6 * (i + 1), t)
           for i, (f, t) in enumerate(zip(flops, seconds))]
  result = analysis.analyze(_report(specs))
  params = _row(result, 'params')
  assert params['r2_log'] == pytest.approx(1.0) and params['slope'] == pytest.approx(-1.0)
  assert params['wrong_way'] is True
  assert _row(result, 'flops')['wrong_way'] is False and _row(result, 'flops')['r2_log'] < 0.999
  text = '\n'.join(analysis.markdown(analysis.analyze(_report(specs))))
  # A perfect ordering of 5 cases: 2 of the 5! = 120 orderings are as extreme (p = 0.017).
  assert '| parameters | 5 | **points the wrong way** | -1.00 | 0.017 | ' in text
  assert '| XLA FLOPs | 5 | more, slower | 1.00 | 0.017 | ' in text
  assert ('\n- **Parameter count points the wrong way**: here the cases with more parameters '
          'took less time per step (Spearman rho = -1.00, log-log slope -1.000). Its R^2 = '
          '1.00 measures that inverse trend; it is not parameters costing time. The log-log '
          'fit on the other cases, with its negative slope, predicts a case\'s time within a '
          'median factor of 1.00x.') in text
  assert 'Parameter count** explains' not in text
  assert '\n- The best single proxy here is **XLA FLOPs**: R^2 = ' in text
  assert ('\n- Pointing the wrong way (more of it, less time), so left out of the ranking: '
          'parameters, trainable parameters.') in text
  best = text[text.index('The best single proxy'):].splitlines()[0]
  assert 'parameters' not in best.split('R^2 by proxy:')[1]


def test_when_every_proxy_points_the_wrong_way_none_is_best():
  seconds = np.geomspace(1e-3, 1.0, 4)
  specs = [(f'm{i}', int(1e6 / t), 1e9 / t, 1e8 / t, t) for i, t in enumerate(seconds)]
  text = '\n'.join(analysis.markdown(analysis.analyze(_report(specs))))
  assert 'The best single proxy' not in text
  assert ('\n- No proxy here points the right way (more of it, more time): none predicts '
          'these step times.\n') in text


def test_spearman_p_is_exact_at_small_n_and_never_below_what_n_allows():
  # A perfect ordering of 5: 2 of the 120 orderings (it and its reverse) are as extreme.
  assert significance.spearman(np.arange(5.0), np.arange(5.0)**3) == (1.0, 2 / 120)
  assert significance.spearman(np.arange(8.0), -np.arange(8.0)) == (-1.0, 2 / 40320)
  # Ties take average ranks; the p is scipy's exact permutation test's.
  rho, p = significance.spearman([1, 1, 2, 2, 3], [5, 3, 1, 2, 4])
  assert rho == pytest.approx(-0.2635231383)
  assert p == pytest.approx(80 / 120)
  # 4 cases: even a perfect ordering is p = 2/24, so no p at all.
  assert significance.spearman(np.arange(4.0), np.arange(4.0)) == (1.0, None)
  assert significance.spearman(np.arange(6.0), np.ones(6)) == (None, None)
  # Past 8 cases, random orderings: the p of a perfect ordering is at the resolution.
  _, p = significance.spearman(np.arange(12.0), np.arange(12.0))
  assert p == 1 / (significance.PERMUTATIONS + 1)
  _, p = significance.spearman(np.arange(12.0), np.arange(12.0)[[1, 0, 3, 2, 5, 4, 7, 6, 9, 8,
                                                                    11, 10]])
  assert 0 < p < 1e-3


def test_a_report_of_5_cases_prints_no_p_below_2_in_120():
  # The quickstart's shape: a two-term fit whose leave-one-out predictions order the 5
  # cases perfectly, which scipy's t approximation called p = 1.4e-24.
  specs = [('mlp_b32', 445_450, 6.6e7, 2.4e7, 0.0015), ('cnn_b32', 227_146, 9.7e8, 1.7e8, 0.067),
           ('mlp_b256', 445_450, 4.9e8, 3.5e7, 0.010), ('cnn_b256', 227_146, 7.8e9, 1.3e9, 0.58),
           ('shapes', 226_118, 9.7e8, 1.7e8, 0.074)]
  result = analysis.analyze(_report(specs))
  ps = [row['spearman_p'] for row in result['proxies'] + result['predictors']]
  assert min(ps) == pytest.approx(2 / 120)
  assert significance.P_NOTE in analysis.markdown(result)


def test_inverted_pairs_only_between_cases_doing_the_same_work():
  report = _report([('mlp_b32', 400_000, 6e7, 2e7, 0.0015), ('cnn_b32', 200_000, 1e9, 2e8, 0.067),
                    ('mlp_b256', 400_000, 5e8, 3e7, 0.010), ('cnn_b256', 200_000, 8e9, 1e9, 0.58)])
  for case in report['cases']:
    case['config']['batch_size'] = int(case['name'].split('_b')[1])
  result = analysis.analyze(report)
  # cnn_b256 against mlp_b32 would be 387x: batch 256 against 32, not a model's cost.
  assert [(p['case'], p['other']) for p in result['inverted_pairs']] == [
      ('cnn_b256', 'mlp_b256'), ('cnn_b32', 'mlp_b32')]
  text = '\n'.join(analysis.markdown(result))
  assert ('- cnn_b256 has 0.500x the parameters of mlp_b256 and takes 58.0x its time per step '
          '(same batch and input shape).') in text
  assert 'of mlp_b32 and takes 387x' not in text

"""The Keras process of `flax-bench peer` (bench/run/peer.py starts it): reads
{'spec', 'warmup_steps', 'timed_steps'} as JSON on standard input, times the twin's
train step (bench/workload/keras_twin.py) and writes the result as JSON on standard
output. Exit 0; 2 with one line when the model has no Keras twin. Imports no JAX.
"""

import json
import sys

from bench.core.errors import fail
from bench.workload import keras_twin
from bench.workload import twins


def main():
  request = json.load(sys.stdin)
  try:
    result = keras_twin.time_train_steps(request['spec'], request['warmup_steps'],
                                         request['timed_steps'])
  except twins.NoTwin as e:
    fail(e)
  json.dump(result, sys.stdout)
  return 0


if __name__ == '__main__':
  sys.exit(main())

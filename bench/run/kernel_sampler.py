"""Random kernels of one kind, for the kernel database's sampling.

`generate(kind, rng)` builds a small JAX program at a random configuration, made
of the ops whose compiled kernels are of that kind (convolutions and their input-
and kernel-gradients as jax.vjp makes them in training, dense layers and their
gradients, pooling and its gradient, elementwise chains, reductions, transposes,
data movement, fills), compiles it for the first device and returns its kernels of
that kind (bench/measure/kernels.py). What the compiler made of the op is what
comes back: XLA:CPU's max-pool gradient is iotas, a variadic reduce-window and a
scatter, a GPU's convolution is a custom call; so a kind is drawn from every
builder that can make it (SOURCES), and a backend that never makes it gives [].

Sizes are drawn log-uniformly over ranges that hold the project's models at
reference size and its studies (seed CNN/MLP at 32x32 and 64x64, batch 8-256;
ResNets, Xception and MobileNetV2 at up to 224x224 batch 8; the CIFAR nets): a
draw is redrawn until its arrays hold at most MAX_BYTES and a convolution or dot
does at most MAX_FLOPS, so one kernel compiles and times in about a second here.
Everything drawn comes from `rng`: the same seed gives the same programs, so the
same kernel keys.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np

from bench.measure import kernels as kernels_lib

# What a kernel's arrays (operands and results of the program) may hold at most.
MAX_BYTES = 256 * 2**20
# A convolution's or dot's FLOPs at most: ResNet-50's largest layer at 224x224,
# batch 8, is 3.7e9 (its first); 8e9 takes about a second on this 2-core CPU.
MAX_FLOPS = 8e9
# Draws tried before a kind is given up (a draw too large is redrawn, a program
# whose compile made no kernel of the kind is drawn again).
ATTEMPTS = 20


def _log_int(rng, low, high):
  """An integer drawn log-uniformly in [low, high]."""
  return int(round(math.exp(rng.uniform(math.log(low), math.log(high)))))


def _spec(shape, dtype=jnp.float32):
  return jax.ShapeDtypeStruct(tuple(int(d) for d in shape), dtype)


def _nbytes(specs):
  return sum(math.prod(s.shape) * s.dtype.itemsize for s in jax.tree.leaves(specs))


def _image(rng):
  """(batch, height = width, channels) of an activation: batch 1-256, spatial 1-224,
  channels 1-2048 (an MLP's flattened image and a ResNet's last stage included)."""
  return _log_int(rng, 1, 256), _log_int(rng, 1, 224), _log_int(rng, 1, 2048)


# Layer-like sizes, half of the convolutions' draws: a network's activations are its
# input halved stage by stage, its channels a few widths, its batch a power of two. A
# log-uniform draw seldom lands there at once (a 3x3 window over a 2x2 input of 256
# channels, one in some fifty draws), and XLA:CPU's convolutions there ran at 3 GFLOP/s
# against tens elsewhere.
_INPUTS = (32, 64, 224, 299)
_WIDTHS = (3, 8, 16, 24, 32, 48, 64, 96, 128, 144, 192, 256, 384, 512, 576, 728, 960, 1024,
           1536, 2048)


def _layer_like(rng):
  """(batch, height = width, channels) of a layer's activation (_INPUTS, _WIDTHS)."""
  size = max(1, int(rng.choice(_INPUTS)) >> int(rng.integers(6)))
  return 2 ** int(rng.integers(9)), size, int(rng.choice(_WIDTHS))


def _conv(rng):
  """A convolution forward, its input- and kernel-gradient (jax.vjp, as a train step
  takes them), or only one of the three: NHWC/HWIO as Flax, any window 1-7, stride
  1-2, SAME or VALID, grouped (depthwise: groups = input channels) a fifth of the time;
  sizes log-uniform (_image) or layer-like (_layer_like), half and half."""
  layer_like = rng.random() < 0.5
  batch, size, cin = (_layer_like if layer_like else _image)(rng)
  depthwise = rng.random() < 0.2
  # A depthwise convolution's window is 3 or 5 and its multiplier 1 or 2 in the
  # zoo (MobileNetV2, Xception); YNNPACK's depthwise kernel-gradient at 7x7 and
  # multiplier 2 runs at 0.07 GFLOP/s here, seconds a call.
  window = int(rng.choice([3, 3, 5] if depthwise else [1, 1, 3, 3, 3, 5, 7]))
  stride = int(rng.choice([1, 1, 2]))
  cout = (cin * int(rng.choice([1, 1, 1, 2])) if depthwise
          else int(rng.choice(_WIDTHS)) if layer_like else _log_int(rng, 1, 2048))
  groups = cin if depthwise else 1
  padding = str(rng.choice(['SAME', 'VALID']))
  size = max(size, window)
  out = -(-size // stride) if padding == 'SAME' else (size - window) // stride + 1
  flops = 2 * batch * out * out * cout * window * window * (cin // groups)
  x, w = _spec((batch, size, size, cin)), _spec((window, window, cin // groups, cout))
  ct = _spec((batch, out, out, cout))

  def conv(x, w):
    return jax.lax.conv_general_dilated(x, w, (stride, stride), padding,
                                        dimension_numbers=('NHWC', 'HWIO', 'NHWC'),
                                        feature_group_count=groups)

  part = int(rng.integers(4))
  programs = [lambda x, w, ct: (conv(x, w), *jax.vjp(conv, x, w)[1](ct)),
              lambda x, w, ct: conv(x, w),
              lambda x, w, ct: jax.vjp(conv, x, w)[1](ct)[0],
              lambda x, w, ct: jax.vjp(conv, x, w)[1](ct)[1]]
  return programs[part], (x, w, ct), flops


def _dot(rng):
  """A dense layer (batch x features @ features x units), a batched one a fifth of the
  time, and its gradients: M 1-4096 rows, K 1-16384 features (a flattened image),
  N 1-4096 units."""
  m, k, n = _log_int(rng, 1, 4096), _log_int(rng, 1, 16384), _log_int(rng, 1, 4096)
  lead = (_log_int(rng, 1, 64),) if rng.random() < 0.2 else ()
  a, b, ct = _spec((*lead, m, k)), _spec((*lead, k, n)), _spec((*lead, m, n))

  def dot(a, b):
    return jnp.matmul(a, b)

  backward = rng.random() < 0.6
  program = ((lambda a, b, ct: jax.vjp(dot, a, b)[1](ct)) if backward
             else (lambda a, b, ct: dot(a, b)))
  return program, (a, b, ct), 2 * math.prod(lead) * m * k * n


def _pool(rng):
  """Max or average pooling over NHWC (window 2-3, stride 1-2, SAME or VALID) and,
  two times in three, its gradient: the reduce-window, scatter or select-and-scatter
  kernels a backend makes of it."""
  batch, size, channels = _image(rng)
  window, stride = int(rng.choice([2, 3])), int(rng.choice([1, 2, 2]))
  size, padding = max(size, window), str(rng.choice(['SAME', 'VALID']))
  dims, strides = (1, window, window, 1), (1, stride, stride, 1)
  if rng.random() < 0.5:
    def pool(x):
      return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, dims, strides, padding)
  else:
    def pool(x):
      return jax.lax.reduce_window(x, 0.0, jax.lax.add, dims, strides, padding) / (window * window)
  x = _spec((batch, size, size, channels))
  ct = jax.eval_shape(pool, x)
  if rng.random() < 1 / 3:
    return lambda x, ct: pool(x), (x, ct), 0
  return lambda x, ct: jax.vjp(pool, x)[1](ct)[0], (x, ct), 0


def _flat(rng, max_elements=2**26):
  """A shape of 1-4 dimensions, its elements log-uniform in 1 .. max_elements."""
  rank = int(rng.integers(1, 5))
  total = _log_int(rng, 1, max_elements)
  shares = rng.dirichlet(np.ones(rank))
  return tuple(max(1, int(round(total ** s))) for s in shares)


def _elementwise(rng):
  """An elementwise chain as a layer or an optimizer runs one: an activation (relu,
  gelu, sigmoid, swish), a batch norm's normalisation with broadcast statistics, or
  an Adam update (three arrays out)."""
  shape = _flat(rng)
  x, s = _spec(shape), _spec(shape[-1:])
  choice = int(rng.integers(3))
  if choice == 0:
    act = [jax.nn.relu, jax.nn.gelu, jax.nn.sigmoid, jax.nn.swish, jnp.tanh][int(rng.integers(5))]
    return lambda x, s: act(x * s + s), (x, s), 0
  if choice == 1:
    return (lambda x, s: jax.nn.relu((x - s) * jax.lax.rsqrt(s * s + 1e-3) * s + s)), (x, s), 0

  def adam(p, g, m, v):
    m = 0.9 * m + 0.1 * g
    v = 0.999 * v + 0.001 * g * g
    return p - 1e-3 * m / (jnp.sqrt(v) + 1e-8), m, v
  return adam, (x, x, x, x), 0


def _reduction(rng):
  """A sum or mean over the batch, the spatial axes or the features (a bias gradient,
  a batch norm's statistics, a global average pool), or a softmax cross-entropy."""
  shape = _flat(rng)
  x = _spec(shape)
  if rng.random() < 0.25:
    classes = _log_int(rng, 2, 1000)
    batch = max(1, math.prod(shape) // classes)
    return (lambda z: -jnp.mean(jax.nn.log_softmax(z)[:, 0])), (_spec((batch, classes)),), 0
  axes = tuple(int(a) for a in np.flatnonzero(rng.random(len(shape)) < 0.5)) or (0,)
  mean = rng.random() < 0.5
  return (lambda x: jnp.mean(x * x, axes) if mean else jnp.sum(x, axes)), (x,), 0


def _transpose(rng):
  """A transpose by a random permutation (a layout change, NCHW to NHWC, a kernel's
  io swap), or a copy."""
  shape = _flat(rng)
  order = tuple(int(a) for a in rng.permutation(len(shape)))
  if order == tuple(range(len(shape))):
    return (lambda x: jnp.flip(x, 0)), (_spec(shape),), 0
  return (lambda x: jnp.transpose(x, order)), (_spec(shape),), 0


def _movement(rng):
  """Padding, a concatenation, a slice, a reverse, or a conversion of precision."""
  shape = _flat(rng)
  x = _spec(shape)
  choice = int(rng.integers(5))
  if choice == 0:
    pads = [(int(rng.integers(3)), int(rng.integers(3))) for _ in shape]
    return (lambda x: jnp.pad(x, pads)), (x,), 0
  if choice == 1:
    axis = int(rng.integers(len(shape)))
    return (lambda x, y: jnp.concatenate([x, y], axis)), (x, x), 0
  if choice == 2:
    return (lambda x: x[tuple(slice(d // 4, d) for d in shape)]), (x,), 0
  if choice == 3:
    return (lambda x: jnp.flip(x, tuple(range(len(shape))))), (x,), 0
  return (lambda x: x.astype(jnp.bfloat16)), (x,), 0


def _fill(rng):
  """A broadcast of a scalar (zeros, an optimizer's initial state) or an iota."""
  shape = _flat(rng)
  if rng.random() < 0.5:
    return (lambda s: jnp.broadcast_to(s, shape)), (_spec(()),), 0
  return ((lambda s: s + jax.lax.broadcasted_iota(jnp.int32, shape, len(shape) - 1)),
          (_spec((), jnp.int32),), 0)


def _gather(rng):
  """Rows of a table by index (an embedding, a label's log-probability)."""
  rows, width, picks = _log_int(rng, 2, 100_000), _log_int(rng, 1, 1024), _log_int(rng, 1, 65536)
  return (lambda t, i: t[i]), (_spec((rows, width)), _spec((picks,), jnp.int32)), 0


def _scatter(rng):
  """Rows added into a table by index (an embedding's gradient)."""
  rows, width, picks = _log_int(rng, 2, 100_000), _log_int(rng, 1, 1024), _log_int(rng, 1, 65536)
  return ((lambda t, i, u: t.at[i].add(u)),
          (_spec((rows, width)), _spec((picks,), jnp.int32), _spec((picks, width))), 0)


# The builders whose programs can compile to kernels of each kind, on some backend.
SOURCES = {
    'convolution': (_conv,),
    'dot': (_dot,),
    'reduce-window': (_pool,),
    'select-and-scatter': (_pool,),
    'scatter': (_scatter, _pool),
    'gather': (_gather,),
    'reduction': (_reduction,),
    'elementwise': (_elementwise,),
    'transpose': (_transpose,),
    'movement': (_movement,),
    'fill': (_fill,),
    'custom-call': (_conv, _dot),  # a GPU's cuDNN and cuBLAS calls
}
assert set(SOURCES) == set(kernels_lib.KINDS)


def _draw(builder, rng):
  """(program, argument specs) of one draw of `builder` within the caps."""
  for _ in range(ATTEMPTS):
    program, specs, flops = builder(rng)
    if flops > MAX_FLOPS:
      continue
    if _nbytes(specs) + _nbytes(jax.eval_shape(program, *specs)) <= MAX_BYTES:
      return program, specs
  raise RuntimeError(f'{builder.__name__}: no draw within the caps in {ATTEMPTS} tries')


def program_kernels(program, specs):
  """[Kernel] of `program` compiled (for the default device) on arrays of `specs`."""
  compiled = jax.jit(program).lower(*specs).compile()
  return kernels_lib.kernels(compiled.as_text())


def generate(kind, rng, every_kind=False):
  """[Kernel] of a random program whose compile runs kernels of `kind` (each key
  once): those of `kind`, or with `every_kind` every kernel of that program. [] when
  ATTEMPTS programs made none (a kind this backend does not make, such as XLA:CPU's
  select-and-scatter or custom call). `rng` is a numpy Generator."""
  if kind not in SOURCES:
    raise ValueError(f'unknown kernel kind {kind!r}; the kinds: {", ".join(kernels_lib.KINDS)}')
  builders = SOURCES[kind]
  for _ in range(ATTEMPTS):
    program, specs = _draw(builders[int(rng.integers(len(builders)))], rng)
    found = program_kernels(program, specs)
    if any(k.kind == kind for k in found):
      unique = {k.key: k for k in found if every_kind or k.kind == kind}
      return list(unique.values())
  return []

"""Image folders: one subfolder per class, images of any size inside.

  DIR/<class name>/<any/sub/path>/<image>.jpg|.jpeg|.png|.gif|.bmp

Classes are the subfolder names in sorted order (label 0 is the first). Files
without an image extension (README.txt, .DS_Store, Thumbs.db) are ignored and
counted. A file with an image extension must be a complete image: its content is
checked when the folder is listed (magic bytes at the start, the format's end
marker at the end: two small reads per file), and a file that is not an image,
or is truncated, stops the run with its path. Stopping rather than skipping is
deliberate: a benchmark over silently fewer images than the user has would
misreport both the data and the time per epoch.

The folder is one split, 'train'; validation and test splits are carved from it
with tfds slicing ('train[:85%]', 'train[85%:]'). The examples are ordered by a
hash of their path relative to DIR, so a slice is a random-looking, stable
subset: the same on every machine and unaffected by the config's seed.
"""

import hashlib
import os

from bench.core.errors import UserError

IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.gif', '.bmp')
# How far from the end of the file the format's end marker may sit: cameras and
# editors append padding or metadata after a JPEG's EOI.
_TAIL_BYTES = 4096


def _problem(path):
  """Why the file at `path` is not a complete image, or None."""
  try:
    with open(path, 'rb') as f:
      head = f.read(16)
      f.seek(0, os.SEEK_END)
      size = f.tell()
      f.seek(max(size - _TAIL_BYTES, 0))
      tail = f.read()
  except OSError as e:
    return f'cannot be read ({e.strerror or e})'
  if head.startswith(b'\xff\xd8\xff'):
    return None if b'\xff\xd9' in tail else 'is a truncated JPEG (no end-of-image marker)'
  if head.startswith(b'\x89PNG\r\n\x1a\n'):
    return None if b'IEND' in tail[-64:] else 'is a truncated PNG (no IEND chunk)'
  if head[:6] in (b'GIF87a', b'GIF89a'):
    return None if b';' in tail[-16:] else 'is a truncated GIF (no trailer)'
  if head.startswith(b'BM') and len(head) >= 6:
    declared = int.from_bytes(head[2:6], 'little')
    return None if declared <= size else f'is a truncated BMP ({size} of {declared} bytes)'
  return (f'is not an image (its {size} bytes start with {head[:8]!r}, which is not '
          'JPEG, PNG, GIF or BMP)')


def scan(root):
  """(paths, labels, class names, number of ignored files) of the image folder `root`.

  Raises UserError for a missing folder, fewer than two classes, a class without
  images, or a file that is not a complete image.
  """
  layout = f'expected {root}/<class>/<image>.jpg with one subfolder per class'
  if not os.path.isdir(root):
    raise UserError(f'image folder {root!r} does not exist or is not a directory; {layout}')
  classes = sorted(entry.name for entry in os.scandir(root)
                   if entry.is_dir() and not entry.name.startswith('.'))
  if len(classes) < 2:
    raise UserError(f'image folder {root!r} has {len(classes)} class subfolder'
                    f'{"" if len(classes) == 1 else "s"} {classes}; classification needs at '
                    f'least 2: {layout}')
  keyed, ignored = [], 0
  for label, name in enumerate(classes):
    count = 0
    for dirpath, dirnames, filenames in os.walk(os.path.join(root, name)):
      dirnames[:] = sorted(d for d in dirnames if not d.startswith('.'))
      for filename in sorted(filenames):
        path = os.path.join(dirpath, filename)
        if filename.startswith('.') or not filename.lower().endswith(IMAGE_EXTENSIONS):
          ignored += 1
          continue
        problem = _problem(path)
        if problem:
          raise UserError(f'image folder file {path} {problem}; delete or replace it (files '
                          f'with an image extension must be images)')
        relative = os.path.relpath(path, root)
        keyed.append((hashlib.sha1(relative.encode()).hexdigest(), path, label))
        count += 1
    if not count:
      raise UserError(f'class folder {os.path.join(root, name)} has no images '
                      f'({", ".join(IMAGE_EXTENSIONS)}); add some or remove the folder')
  keyed.sort()
  return (tuple(path for _, path, _ in keyed), tuple(label for _, _, label in keyed),
          tuple(classes), ignored)

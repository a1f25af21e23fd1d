"""Loaded by every Python process the tests start (tests/conftest.py puts this
folder on PYTHONPATH): a connection to anything but this machine raises, so a
test that would reach the network fails at once instead of retrying for minutes."""

import ipaddress
import socket

_connect = socket.socket.connect


def _local(address):
  host = address[0] if isinstance(address, tuple) else address
  if not isinstance(host, str) or host == 'localhost':
    return True
  try:
    return ipaddress.ip_address(host).is_loopback
  except ValueError:
    return False  # a host name other than localhost


def _guarded_connect(sock, address):
  if sock.family in (socket.AF_INET, socket.AF_INET6) and not _local(address):
    raise OSError(f'tests must not reach the network (connect to {address!r})')
  return _connect(sock, address)


socket.socket.connect = _guarded_connect

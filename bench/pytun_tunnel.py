"""A UDP tunnel written the way python-pytun users write one (cf. pytun's own test/test_tun.py).

    PYTHONPATH=. python bench/pytun_tunnel.py TUN TUN_ADDR TUN_PEER UDP_LOCAL UDP_REMOTE PORT

Runs on pytun_compat as it stands; tests/test_pytun_compat.py and
bench/pytun_bench.py also run it on the real pytun, with the one import line
changed to ``import pytun``.  Prints "ready NAME ADDR PEER NETMASK MTU" once
configured, then forwards until killed: select() on the TUN and the socket,
``tun.read(tun.mtu)`` per packet.
"""
import select
import socket
import sys

from tuntap_cffi import pytun_compat as pytun

name, tun_addr, tun_peer, udp_local, udp_remote, port = sys.argv[1:]
port = int(port)

tun = pytun.TunTapDevice(name=name, flags=pytun.IFF_TUN | pytun.IFF_NO_PI)
tun.addr = tun_addr
tun.dstaddr = tun_peer
tun.netmask = "255.255.255.0"
tun.mtu = 1400
tun.up()

sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.bind((udp_local, port))
print("ready", tun.name, tun.addr, tun.dstaddr, tun.netmask, tun.mtu, flush=True)

while True:
    readable, _, _ = select.select([tun, sock], [], [])
    if tun in readable:
        sock.sendto(tun.read(tun.mtu), (udp_remote, port))
    if sock in readable:
        packet, sender = sock.recvfrom(65535)
        if sender == (udp_remote, port):
            tun.write(packet)

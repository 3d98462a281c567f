"""Server CPU per new TLS connection (handshake + one request): the gateway's TlsSite (first byte peeked,
then loop.connect_accepted_socket) against aiohttp's TCPSite(ssl_context=...) (loop.create_server(ssl=...)),
each server in its own process, 6 alternating rounds of 300 connections.

    .venv/bin/python bench/experiments/tls_accept_cost.py
"""
import asyncio, os, ssl, subprocess, sys, time, statistics
from pathlib import Path
import tempfile

import uvloop
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

def serve(kind, port_file):
    from gateway.config.model import TlsConfig
    from gateway.ops.tls_listener import CertificateRotation, TlsSite, build_context
    async def main():
        async def handle(request): return web.Response(text="ok")
        runner = web.ServerRunner(web.Server(handle, access_log=None)); await runner.setup()
        tls = TlsConfig(str(D / "server.pem"), str(D / "server-key.pem"))
        if kind == "tlssite":
            site = TlsSite(runner, "127.0.0.1", 0, CertificateRotation(tls), timeout=20)
        else:
            site = web.TCPSite(runner, "127.0.0.1", 0, ssl_context=build_context(tls).context)
        await site.start()
        Path(port_file).write_text(str(runner.addresses[0][1]))
        await asyncio.Event().wait()
    uvloop.run(main())

if sys.argv[1:2] == ["serve"]:
    D = Path(sys.argv[4])
    serve(sys.argv[2], sys.argv[3]); sys.exit()

from gateway.tools.devcerts import make_devcerts  # noqa: E402

work = Path(tempfile.mkdtemp(prefix="tls-accept-"))
D = work / "certs"
make_devcerts(D)

def cpu(pid):
    f = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")

procs = {}
for kind in ("tcpsite", "tlssite"):
    pf = str(work / f"port-{kind}")
    procs[kind] = subprocess.Popen([sys.executable, __file__, "serve", kind, pf, str(D)])
    while not Path(pf).exists() or not Path(pf).read_text(): time.sleep(0.05)
    procs[kind].port = int(Path(pf).read_text())
ctx = ssl.create_default_context(cafile=str(D / "ca.pem"))
async def burst(port, n):
    for _ in range(n):
        r, w = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="localhost")
        w.write(b"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"); await r.read(); w.close()
res = {k: [] for k in procs}
try:
    for rnd in range(6):
        order = list(procs) if rnd % 2 == 0 else list(procs)[::-1]
        for kind in order:
            p = procs[kind]; n = 300
            c0 = cpu(p.pid); asyncio.run(burst(p.port, n)); res[kind].append((cpu(p.pid) - c0) / n * 1e6)
    for k, v in res.items(): print(k, "server CPU us/connection per round:", [round(x) for x in v], "median", round(statistics.median(v)))
    print("tlssite/tcpsite per-round median ratio:", round(statistics.median(a / b for a, b in zip(res["tlssite"], res["tcpsite"])), 3))
finally:
    for p in procs.values(): p.terminate()

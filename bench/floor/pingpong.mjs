// Round trip of 64 bytes between two Node processes over loopback TCP, the server reading with
// 'data' events or with onread (as wsblk's server and daemon do): the floor of one Node hop, and
// the server's CPU per round trip. Run: node bench/floor/pingpong.mjs [rounds]
// Results: bench/RESULTS.md, "What one hop costs".
import { fork } from 'node:child_process';
import { createServer, connect, Socket } from 'node:net';
import { once } from 'node:events';
import { dupFd } from '@wsblk/native';

const N = Number(process.argv[2] ?? 2000);

if (process.env.PINGPONG_SERVER) {
  const reads = process.env.PINGPONG_SERVER;
  const srv = createServer({ noDelay: true }, (s) => {
    let n = 0;
    let c0 = process.cpuUsage();
    const echo = (d) => {
      if (n++ === 0) c0 = process.cpuUsage();
      s.write(d);
      if (n === N) process.send({ cpu: process.cpuUsage(c0) });
    };
    if (reads === 'data') return void s.on('data', echo);
    // As the storage server does (acceptUpgrade with dupFd): onread on a duplicate of the
    // accepted socket's descriptor; the accepted socket is destroyed.
    const buf = Buffer.allocUnsafe(64 * 1024);
    const dup = dupFd(s._handle.fd);
    s.destroy();
    s = new Socket({ fd: dup, readable: true, writable: true, onread: { buffer: buf, callback: (k) => { echo(buf.subarray(0, k)); return true; } } });
  });
  srv.listen(0, '127.0.0.1', () => process.send({ port: srv.address().port }));
} else {
  const order = process.env.PINGPONG_ORDER === 'reverse' ? ['onread', 'data'] : ['data', 'onread'];
  for (const reads of order) {
    const child = fork(new URL(import.meta.url).pathname, [String(N)], { env: { ...process.env, PINGPONG_SERVER: reads } });
    const [{ port }] = await once(child, 'message');
    const c = connect({ port, host: '127.0.0.1', noDelay: true });
    await once(c, 'connect');
    const lat = [];
    const out = Buffer.alloc(64);
    await new Promise((resolve) => {
      let t = process.hrtime.bigint();
      c.on('data', () => {
        lat.push(Number(process.hrtime.bigint() - t) / 1000);
        if (lat.length === N) return resolve();
        t = process.hrtime.bigint();
        c.write(out);
      });
      c.write(out);
    });
    const [{ cpu }] = await once(child, 'message');
    lat.sort((a, b) => a - b);
    const q = (f) => lat[Math.floor(N * f)].toFixed(0);
    console.log(`node, server reads by ${reads.padEnd(6)} round trip (us): p10 ${q(0.1)} p50 ${q(0.5)} p90 ${q(0.9)}; server CPU per round trip: user ${(cpu.user / N).toFixed(0)} us, system ${(cpu.system / N).toFixed(0)} us`);
    c.destroy();
    child.kill();
  }
}

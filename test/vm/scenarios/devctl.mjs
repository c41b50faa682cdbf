// Quick questions to the kernel about a ublk device, for the scenarios (one node start per
// call instead of a `wsblk list` per poll: node is slow to start under TCG).
//   node devctl.mjs pid ID                    pid serving the queues
//   node devctl.mjs wait ID STATE [OLDPID] [TIMEOUT_S]
//                                             until the kernel state is STATE (live, quiesced)
//                                             and, if OLDPID is given, another pid serves it
import { getDeviceInfo } from '@wsblk/native';

const [cmd, id, ...rest] = process.argv.slice(2);
const devId = Number(String(id).replace(/^ublk/, '').replace(/^\/dev\/ublk[bc]/, ''));
if (cmd === 'pid') {
  console.log((await getDeviceInfo(devId)).daemonPid);
} else if (cmd === 'wait') {
  const [state, oldPid = '', timeout = '120'] = rest;
  const deadline = Date.now() + Number(timeout) * 1000;
  for (;;) {
    const info = await getDeviceInfo(devId).catch((e) => ({ state: `error: ${e.message}`, daemonPid: -1 }));
    if (info.state === state && (oldPid === '' || String(info.daemonPid) !== oldPid)) {
      console.log(info.daemonPid);
      break;
    }
    if (Date.now() > deadline) {
      console.error(`device ${devId}: still ${info.state} (pid ${info.daemonPid}) after ${timeout} s, wanted ${state}`);
      process.exit(1);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
} else {
  console.error('usage: devctl.mjs pid ID | wait ID STATE [OLDPID] [TIMEOUT_S]');
  process.exit(2);
}

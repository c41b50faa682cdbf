// Stands in for `wsblk recover` on an NBD device (recover is ublk-only: the kernel holds a dead
// daemon's ublk I/O, nothing holds an NBD socket's): a new daemon run from the device's state
// file, its target as it is (session, secret, gateways), waiting for a server forever, as
// recover's does. Usage: node recover-nbd.js ID SOCKET (WSBLK_RUN_DIR names the run directory).
import { Daemon, nbdFrontend, readState, runDir } from '@wsblk/client';

const [id, socket] = process.argv.slice(2) as [string, string];
const state = readState(runDir(), id);
if (!state?.target) throw new Error(`no state with a target for ${id}`);
const daemon = new Daemon({
  id, kind: 'nbd', target: state.target, connectTimeoutMs: 0, frontend: nbdFrontend(socket),
  recorded: state.options, extraState: { socket },
});
const ready = await daemon.start();
process.stdout.write(ready.device + '\n');
process.exit(await daemon.done);

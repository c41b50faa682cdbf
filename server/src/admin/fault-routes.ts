// The fault API on the admin listener, shaped like Toxiproxy's: GET /faults lists, POST /faults
// sets one (a pause answers once the requests it holds back have drained), DELETE /faults/NAME
// and DELETE /faults clear, POST /faults/NAME/crash drops a crash fault's unflushed writes.
import { FaultSpecError } from '../faults/fault-spec.js';
import type { FaultTable } from '../faults/fault-table.js';
import { AdminError, type AdminServer } from './admin-server.js';

/** A bad fault is the client's mistake: 400 with the reason. */
function asked<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    if (e instanceof FaultSpecError) throw new AdminError(400, e.message);
    throw e;
  }
}

export function addFaultRoutes(admin: AdminServer, table: FaultTable): AdminServer {
  return admin
    .route('GET', /^\/faults\/?$/, () => ({ status: 200, json: table.list() }))
    .route('POST', /^\/faults\/?$/, async (req) => {
      if (req.body === undefined) throw new AdminError(400, 'POST /faults needs a JSON body, e.g. {"kind":"delay","export":"disk0","ms":50}');
      const spec = await table.set(req.body, req.who).catch((e: unknown) => {
        throw e instanceof FaultSpecError ? new AdminError(400, e.message) : e;
      });
      return { status: 200, json: spec };
    })
    .route('DELETE', /^\/faults\/?$/, (req) => ({ status: 200, json: { cleared: table.clear(undefined, req.who) } }))
    .route('DELETE', /^\/faults\/([^/]+)$/, (req) => {
      const name = req.params[0]!;
      if (table.clear(name, req.who) === 0) throw new AdminError(404, `no fault '${name}'`);
      return { status: 200, json: { cleared: 1 } };
    })
    .route('POST', /^\/faults\/([^/]+)\/crash$/, (req) => {
      const name = req.params[0]!;
      if (!table.has(name)) throw new AdminError(404, `no fault '${name}'`);
      return { status: 200, json: asked(() => table.crash(name, req.who)) };
    });
}

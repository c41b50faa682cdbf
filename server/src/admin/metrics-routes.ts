// GET /metrics on the admin listener: the server's figures as Prometheus text.
import type { Registry } from 'prom-client';
import type { AdminServer } from './admin-server.js';

export function addMetricsRoutes(admin: AdminServer, registry: Registry): AdminServer {
  return admin.route('GET', /^\/metrics\/?$/, async () => ({
    status: 200, text: await registry.metrics(), contentType: registry.contentType,
  }));
}

import type { FastifyInstance } from 'fastify'
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client'
import type { PipelineGauges, PoolGauges } from '../persistence/persistence-options.js'
import { unauthorized } from './problems.js'

export interface MetricsOptions {
  /** When set, `/metrics` needs `Authorization: Bearer <token>`. */
  token?: string
  /** The PostgreSQL pool, for its gauges. */
  pool?: PoolGauges
  /** The pipelined PostgreSQL connection, for its gauges. */
  pipeline?: PipelineGauges
}

/**
 * Prometheus metrics at `GET /metrics`: requests and their durations by method, route pattern
 * and status, process metrics, and the PostgreSQL pool's and pipelined connection's state.
 */
export function registerMetrics (app: FastifyInstance, options: MetricsOptions): void {
  const registry = new Registry()
  collectDefaultMetrics({ register: registry })
  const labelNames = ['method', 'route', 'status'] as const
  const requests = new Counter({ name: 'http_requests_total', help: 'HTTP requests answered', labelNames, registers: [registry] })
  const duration = new Histogram({
    name: 'http_request_duration_seconds',
    help: 'Time to answer an HTTP request',
    labelNames,
    buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
    registers: [registry]
  })
  const gauge = (name: string, help: string, read: () => number): void => {
    const g = new Gauge({ name, help, registers: [registry], collect () { g.set(read()) } })
  }
  const { pool, pipeline } = options
  if (pool !== undefined) {
    gauge('db_pool_connections', 'Connections open in the PostgreSQL pool', () => pool.totalCount)
    gauge('db_pool_idle_connections', 'Idle connections in the PostgreSQL pool', () => pool.idleCount)
    gauge('db_pool_waiting_requests', 'Queries waiting for a pooled connection', () => pool.waitingCount)
  }
  if (pipeline !== undefined) {
    gauge('db_pipeline_open', 'Whether the pipelined PostgreSQL connection is open (1) or not (0)', () => pipeline.open ? 1 : 0)
    const handed = new Counter({
      name: 'db_pipeline_handed_to_pool_total',
      help: 'Statements the pipelined connection handed to the pool: after a lock wait (lock_wait), for want of a connection (no_connection), or sent behind a failed Parse of theirs (not_prepared)',
      labelNames: ['reason'],
      registers: [registry],
      collect () {
        handed.reset()
        handed.inc({ reason: 'lock_wait' }, pipeline.handedToPool.lockWait)
        handed.inc({ reason: 'no_connection' }, pipeline.handedToPool.noConnection)
        handed.inc({ reason: 'not_prepared' }, pipeline.handedToPool.notPrepared)
      }
    })
  }

  app.addHook('onResponse', async (request, reply) => {
    const labels = { method: request.method, route: request.routeOptions.url ?? '(no route)', status: String(reply.statusCode) }
    requests.inc(labels)
    duration.observe(labels, reply.elapsedTime / 1000)
  })

  app.get('/metrics', { schema: { hide: true } }, async (request, reply) => {
    if (options.token !== undefined && request.headers.authorization !== `Bearer ${options.token}`) {
      throw unauthorized()
    }
    return await reply.type(registry.contentType).send(await registry.metrics())
  })
}

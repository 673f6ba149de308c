// Reference servers for `BENCH_REFERENCE=1 npm run bench`: what the machine gives a PUT with
// far less than the service does, to read the service's own rows against.
//   REFERENCE=minimal: Fastify + better-sqlite3 on the seeded file; the key looked up by its
//     hash, the body checked by a JSON schema, the read and the merged write in one
//     transaction; no logs, metrics, request ids, ETags, If-Match, idempotency or retries.
//   REFERENCE=noop: the same route parsing and checking the body, answering a fixed user
//     without touching a database.
import { hash } from 'node:crypto'
import Database from 'better-sqlite3'
import Fastify from 'fastify'

const app = Fastify({ logger: false })
const body = {
  type: 'object',
  additionalProperties: false,
  properties: { name: { type: 'string', maxLength: 100 }, email: { type: 'string' }, metadata: { type: 'object' } }
}
const resource = (u, metadata) => ({
  message: 'fetch resource successfully',
  klaim_id: u.klaim_id,
  user_id: u.user_id,
  email: u.email,
  name: u.name,
  metadata,
  credit_balance: u.credit_balance,
  acquisition_source: u.acquisition_source,
  created_at: u.created_at,
  updated_at: u.updated_at
})

if (process.env.REFERENCE === 'noop') {
  const fixed = resource({ klaim_id: '1_a', user_id: 'u1', email: 'u1@example.com', name: 'x', credit_balance: 0, acquisition_source: 'api', created_at: 1, updated_at: 1 }, {})
  app.put('/users/:user_id', { schema: { body } }, async () => fixed)
} else {
  const db = new Database(process.env.DATABASE_URL.slice('sqlite:'.length))
  db.pragma('journal_mode = WAL')
  db.pragma('synchronous = NORMAL')
  const keyByHash = db.prepare('select app_id from api_keys where key_hash = ? and revoked_at is null')
  const find = db.prepare('select * from users where app_id = ? and user_id = ?')
  const write = db.prepare('update users set name = ?, metadata = ?, updated_at = ?, version = version + 1 where klaim_id = ?')
  const update = db.transaction((appId, userId, changes) => {
    const user = find.get(appId, userId)
    if (user === undefined) return undefined
    const metadata = { ...JSON.parse(user.metadata), ...changes.metadata }
    const next = { ...user, name: changes.name ?? user.name, updated_at: Date.now() }
    write.run(next.name, JSON.stringify(metadata), next.updated_at, user.klaim_id)
    return resource(next, metadata)
  })
  app.addHook('onRequest', async (request, reply) => {
    const key = /^Bearer (\S+)$/.exec(request.headers.authorization ?? '')?.[1]
    const found = key === undefined ? undefined : keyByHash.get(hash('sha256', key, 'hex'))
    if (found === undefined) return await reply.code(401).send({ message: 'Missing or invalid API key.', code: 'unauthorized' })
    request.appId = found.app_id
  })
  app.put('/users/:user_id', { schema: { body } }, async (request, reply) => {
    const user = update(request.appId, request.params.user_id, request.body)
    return user ?? reply.code(404).send({ message: 'User not found.', code: 'user_not_found' })
  })
}

await app.listen({ port: Number(process.env.PORT), host: '127.0.0.1' })
for (const signal of ['SIGTERM', 'SIGINT']) process.on(signal, () => { app.close().then(() => process.exit(0), () => process.exit(1)) })

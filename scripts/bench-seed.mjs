// Seeds a database in bulk (not through HTTP): one app, its key, and N users u0..u(N-1).
// Each user has a name and one metadata key, the shape the PUT load gives it. Seeded without
// them, every user's first PUT would grow its row in a page the bulk insert packed full,
// splitting it about once in 11 updates. The warm-up does that to nearly all of 10,000 users
// but to few of 1,000,000, so the two rows would measure different updates, not the same
// update on more data (see README).
import Database from 'better-sqlite3'
import pg from 'pg'
import { openUsersService } from '../dist/index.js'

export async function seed (databaseUrl, count) {
  const service = await openUsersService({ databaseUrl })
  const { appId, apiKey } = await service.createApp({ name: 'bench' })
  await service.close()
  const now = Date.now()
  if (databaseUrl.startsWith('sqlite:')) {
    const db = new Database(databaseUrl.slice('sqlite:'.length))
    const insert = db.prepare(`insert into users (klaim_id, app_id, user_id, email, email_key, name, metadata, credit_balance, acquisition_source, created_at, updated_at, version)
      values (?, ?, ?, ?, ?, ?, ?, 0, 'api', ?, ?, 1)`)
    const batch = db.transaction((from, to) => {
      for (let i = from; i < to; i++) insert.run(`${now}_s${i}`, appId, `u${i}`, `u${i}@example.com`, `u${i}@example.com`, `Name ${i}`, `{"k":${i}}`, now, now)
    })
    for (let from = 0; from < count; from += 100_000) batch(from, Math.min(count, from + 100_000))
    db.close()
  } else {
    const client = new pg.Client({ connectionString: databaseUrl })
    await client.connect()
    await client.query(`insert into users (klaim_id, app_id, user_id, email, email_key, name, metadata, credit_balance, acquisition_source, created_at, updated_at, version)
      select $1 || '_s' || i, $2, 'u' || i, 'u' || i || '@example.com', 'u' || i || '@example.com',
        'Name ' || i, jsonb_build_object('k', i), 0, 'api', $3, $3, 1
      from generate_series(0, $4 - 1) as i`, [String(now), appId, now, count])
    await client.query('analyze users')
    await client.end()
  }
  return { apiKey }
}

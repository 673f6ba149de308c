// `npm run openapi`: writes openapi.json from the route schemas (a test fails when the
// committed file is out of date). No database is needed: the routes are only described.
import { writeFileSync } from 'node:fs'
import { buildHttpApp } from '../dist/adapters/http/app.js'

const unused = async () => { throw new Error('not served') }
const app = await buildHttpApp({
  service: { authenticate: unused, createUser: unused, getUser: unused, updateUserProfile: unused, idempotent: unused, ping: unused },
  metrics: false
})
await app.ready()
writeFileSync(new URL('../openapi.json', import.meta.url), JSON.stringify(app.swagger(), null, 2) + '\n')
await app.close()
console.log('written: openapi.json')

// The contract's in-process example, as written, against the built package.
// Run: npm run build && node examples/in-process.mjs [databaseUrl]
import { openUsersService } from 'klaim-users'

const databaseUrl = process.argv[2] ?? 'sqlite:./data/users.db'
const users = await openUsersService({ databaseUrl }) // migrates
const { appId } = await users.createApp({ name: 'example' })

const u = await users.createUser({ appId, email: 'ada@example.com', userId: 'ada' })
await users.updateUserProfile({ appId, userId: 'ada', changes: { name: 'Ada', metadata: { plan: 'pro' } }, ifMatch: u.etag })
const read = await users.getUser({ appId, userId: 'ada' })
await users.close()

console.log(JSON.stringify(read))

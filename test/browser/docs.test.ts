import { existsSync } from 'node:fs'
import { chromium } from 'playwright-core'
import t from 'tap'
import { buildHttpApp } from '../../src/adapters/http/app.js'
import { openUsersService } from '../../src/users-service.js'

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium'

if (!existsSync(CHROMIUM)) {
  if (process.env.REQUIRE_BROWSER === '1') throw new Error(`REQUIRE_BROWSER=1 but there is no Chromium at ${CHROMIUM}`)
  t.comment(`!!! No Chromium at ${CHROMIUM} (apt-get install chromium): the docs page browser test is SKIPPED`)
  t.pass('skipped: no Chromium')
} else {
  t.test('the docs page renders the Update User Profile operation in a real browser', async (t) => {
    const service = await openUsersService({ databaseUrl: 'sqlite::memory:' })
    const app = await buildHttpApp({ service })
    const address = await app.listen({ port: 0, host: '127.0.0.1' })
    t.teardown(async () => { await app.close(); await service.close() })
    const browser = await chromium.launch({
      executablePath: CHROMIUM,
      args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync']
    })
    t.teardown(async () => await browser.close())
    const page = await browser.newPage()
    const outside: string[] = []
    page.on('request', (request) => { if (!request.url().startsWith(address)) outside.push(request.url()) })
    await page.goto(`${address}/docs`)
    const operation = page.locator('.opblock-summary-description', { hasText: 'Update User Profile' }).first()
    await operation.waitFor({ timeout: 20_000 })
    t.ok(await operation.isVisible(), 'Update User Profile is rendered')
    t.ok(await page.locator('.opblock-summary-path', { hasText: '/users/{user_id}' }).first().isVisible())
    t.same(outside, [], 'nothing is loaded from outside the service (no CDN)')
  })
}

import { readFileSync } from 'node:fs'
import swagger from '@fastify/swagger'
import swaggerUi from '@fastify/swagger-ui'
import type { FastifyInstance } from 'fastify'

const { version } = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { version: string }

/**
 * OpenAPI 3.1 generated from the route schemas (never written by hand), served at
 * `/openapi.json`, and a Swagger UI page at `/docs` whose assets come from the package, not a
 * CDN. Register before the routes, so every route is seen.
 */
export async function registerOpenApi (app: FastifyInstance): Promise<void> {
  await app.register(swagger, {
    openapi: {
      openapi: '3.1.0',
      info: {
        title: 'klaim-users',
        version,
        description: 'User profiles of many client apps: create, read and update users (Klaim Update User Profile compatible). ' +
          'Every error is `{"message", "code"}`, validation errors add `errors: [{path, message}]`.'
      },
      components: {
        securitySchemes: { apiKey: { type: 'http', scheme: 'bearer', description: 'An API key of the app: `Authorization: Bearer klaim_sk_...`.' } }
      },
      tags: [{ name: 'users', description: 'The users of the caller\'s app' }, { name: 'service', description: 'Health and readiness' }]
    }
  })
  await app.register(swaggerUi, { routePrefix: '/docs', uiConfig: { docExpansion: 'list', deepLinking: true } })
  app.get('/openapi.json', { schema: { hide: true } }, async () => app.swagger())
}

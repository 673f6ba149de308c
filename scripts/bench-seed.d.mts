/** Seeds `databaseUrl` in bulk: one app named 'bench', its key, and `count` users u0..u(count-1). */
export function seed (databaseUrl: string, count: number): Promise<{ apiKey: string }>

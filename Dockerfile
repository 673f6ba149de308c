# Build: compile TypeScript and the better-sqlite3 addon, then keep production dependencies only.
# Node 22 (LTS until April 2027): Node 20 left upstream support in April 2026. Not 24, where
# better-sqlite3 12 aborts the process; not yet 26, whose server needs more memory as it is (see
# the README's Requirements and Performance). `.ci/run` runs the suite on 20, 22 and 26.
FROM node:22-bookworm-slim AS build
WORKDIR /app
RUN apt-get update && apt-get install -y --no-install-recommends python3 make g++ \
  && rm -rf /var/lib/apt/lists/*
COPY package.json package-lock.json tsconfig.json tsconfig.build.json ./
COPY src ./src
# `npm ci` runs the `prepare` script, which builds dist/.
RUN npm ci --no-audit --no-fund && npm prune --omit=dev

# Run: no compilers, no dev dependencies, a non-root user, tini as PID 1 forwarding signals.
FROM node:22-bookworm-slim
RUN apt-get update && apt-get install -y --no-install-recommends tini \
  && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production HOST=0.0.0.0 PORT=3000
WORKDIR /app
COPY --from=build /app/package.json ./
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
RUN mkdir -p /app/data && chown node:node /app/data
USER node
VOLUME ["/app/data"]
EXPOSE 3000
# The container's PORT (a `docker run -e PORT=8080` moves the check with the server).
HEALTHCHECK --interval=10s --timeout=3s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:' + (process.env.PORT || 3000) + '/ready').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--"]
# The server applies pending migrations at start; SIGTERM drains requests and exits 0.
CMD ["node", "dist/main.js"]

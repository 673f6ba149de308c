// `--import` entry for the test processes (see .taprc): installs ./typescript-hooks.mjs. In the
// process's own thread where Node has registerHooks (22.15 and newer: no hooks thread, and no
// deprecation warning on Node 26); on a hooks thread with register on Node 20.
import * as nodeModule from 'node:module'

if (typeof nodeModule.registerHooks === 'function') nodeModule.registerHooks(await import('./typescript-hooks.mjs'))
else nodeModule.register('./typescript-hooks.mjs', import.meta.url)

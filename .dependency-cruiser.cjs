/**
 * The architecture's import rules (README, "Layout"), checked by `npm run lint`.
 * Layers: http → domain → (store, connectors); store and connectors import
 * neither domain nor each other's internals; domain never imports HTTP,
 * configuration loading or database drivers. Shared record types live in
 * server/store/store.ts and server/types/ (both sides may use them).
 */
module.exports = {
  forbidden: [
    { name: 'no-cycles', severity: 'error', comment: 'No import cycles.', from: {}, to: { circular: true } },
    {
      name: 'domain-not-http',
      severity: 'error',
      comment: 'The domain does not know HTTP, the configuration loader or the wiring.',
      from: { path: '^server/domain/' },
      to: { path: ['^server/http/', '^server/app\\.ts$', '^server/config\\.ts$', '^server/deps\\.ts$', '^server/main\\.ts$'] },
    },
    {
      name: 'domain-no-drivers',
      severity: 'error',
      comment: 'The domain reaches storage only through the Store interface: no implementation (Kysely or in-memory), database drivers or query builders.',
      from: { path: '^server/domain/' },
      to: {
        path: [
          'node_modules/(pg|better-sqlite3|kysely)/',
          '^server/store/(kysely|memory)(-store\\.ts$|/)',
          '^server/store/migrations\\.ts$',
          '^server/store/schema\\.ts$',
        ],
      },
    },
    {
      name: 'store-not-domain',
      severity: 'error',
      comment: 'The store does not import the domain (shared types live in server/types or store.ts).',
      from: { path: '^server/store/' },
      to: { path: ['^server/domain/', '^server/http/', '^server/connectors/'] },
    },
    {
      name: 'http-through-services',
      severity: 'error',
      comment:
        'HTTP code reaches data only through the domain services: no store implementation or driver, and from the Store interface module only its record types (type-only imports).',
      from: { path: '^server/http/' },
      to: {
        path: [
          'node_modules/(pg|better-sqlite3|kysely)/',
          '^server/store/(kysely|memory)(-store\\.ts$|/)',
          '^server/store/migrations\\.ts$',
          '^server/store/schema\\.ts$',
          '^server/store/store\\.ts$',
        ],
        dependencyTypesNot: ['type-only'],
      },
    },
    {
      name: 'store-implementations-apart',
      severity: 'error',
      comment: 'Each Store implementation stands alone: the in-memory one is not built on the Kysely one, nor the reverse.',
      from: { path: '^server/store/memory' },
      to: { path: ['^server/store/kysely', '^server/store/migrations\\.ts$', '^server/store/schema\\.ts$', 'node_modules/(pg|better-sqlite3|kysely)/'] },
    },
    {
      name: 'connectors-alone',
      severity: 'error',
      comment: 'Connectors import neither the domain nor the store.',
      from: { path: '^server/connectors/' },
      to: { path: ['^server/domain/', '^server/store/', '^server/http/'] },
    },
  ],
  options: {
    doNotFollow: { path: 'node_modules' },
    tsPreCompilationDeps: true,
    tsConfig: { fileName: 'tsconfig.json' },
    enhancedResolveOptions: { exportsFields: ['exports'], conditionNames: ['import', 'require', 'node', 'default'], extensions: ['.ts', '.js'] },
  },
};

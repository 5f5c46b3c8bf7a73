// @ts-check
/**
 * Lint: ESLint with typescript-eslint's type-aware recommended rules
 * (`recommendedTypeChecked`: floating and misused promises, unsafe `any`,
 * throwing non-errors, unbound methods, template expressions…), plus
 * `switch-exhaustiveness-check`. Formatting is Prettier's (eslint-config-prettier
 * turns off the rules that would fight it). Exceptions, each with its reason:
 * - node:test's describe/it/before/after return promises the runner tracks:
 *   not floating.
 * - Tests read response bodies, which supertest types as `any`, and build
 *   fixtures: the no-unsafe-* family there would only demand a cast per
 *   assertion.
 * - The SQL row mapping (server/store): rows of raw SQL are untyped by nature
 *   and are turned into typed records in one place per table (toSession,
 *   toCard, …); no-unsafe-* stays on everywhere else.
 * - require-await is off: many async functions implement an async contract
 *   (a processor, a 3DS provider, a route handler, an operation's hooks) with
 *   a synchronous body; no-floating-promises, no-misused-promises and
 *   await-thenable catch the promise mistakes that matter.
 * - no-control-regex is off: input validation rejects control characters
 *   with regular expressions on purpose.
 * - only-throw-error allows the stores' `Rollback` and `Refusal`, thrown inside a
 *   transaction unit to undo it (it is caught by the unit runner, never
 *   escapes it), and the browser code's `ApiErrorShape`: errors cross the
 *   frame boundary by postMessage, which carries no Error prototype.
 * - The browser SDK's public event API (public/src/sdk.ts and the published
 *   cvvops.d.ts) takes listeners whose data is `any` in its catch-all
 *   overload, so merchants' handlers with their own parameter types
 *   type-check; the specific events have typed overloads.
 * - Benchmark code reads response bodies as tests do (no-unsafe-* off there).
 */
import js from '@eslint/js';
import prettier from 'eslint-config-prettier';
import globals from 'globals';
import tseslint from 'typescript-eslint';

const UNSAFE_ANY = {
  '@typescript-eslint/no-unsafe-member-access': 'off',
  '@typescript-eslint/no-unsafe-assignment': 'off',
  '@typescript-eslint/no-unsafe-argument': 'off',
  '@typescript-eslint/no-unsafe-return': 'off',
  '@typescript-eslint/no-unsafe-call': 'off',
  '@typescript-eslint/no-explicit-any': 'off',
};

export default tseslint.config(
  {
    ignores: [
      'dist/**',
      'node_modules/**',
      'packages/node/dist/**',
      'packages/node/src/generated/**',
      'public/assets/**',
      'public/sdk/**',
      'tests/node-sdk/consumer/**',
      'data/**',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
      globals: { ...globals.node },
    },
    rules: {
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['describe', 'it', 'test', 'suite', 'before', 'after', 'beforeEach', 'afterEach'] },
          ],
        },
      ],
      '@typescript-eslint/require-await': 'off',
      'no-control-regex': 'off',
      '@typescript-eslint/only-throw-error': [
        'error',
        {
          allow: [
            { from: 'file', name: 'Rollback', path: 'server/store/kysely/engine.ts' },
            { from: 'file', name: 'Refusal', path: 'server/store/memory/tables.ts' },
            { from: 'file', name: 'ApiErrorShape', path: 'public/src/protocol.ts' },
          ],
        },
      ],
      '@typescript-eslint/switch-exhaustiveness-check': ['error', { considerDefaultExhaustiveForUnions: true }],
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true }],
    },
  },
  { files: ['tests/**', 'bench/**'], rules: UNSAFE_ANY },
  // Test servers (fake providers, receivers) take async request handlers: a rejection there fails the test, as it should.
  { files: ['tests/**'], rules: { '@typescript-eslint/no-misused-promises': ['error', { checksVoidReturn: false }] } },
  { files: ['public/src/sdk.ts', 'public/src/cvvops.d.ts'], rules: { '@typescript-eslint/no-explicit-any': 'off' } },
  { files: ['server/store/**'], rules: UNSAFE_ANY },
  // Routes get the services they use (a Pick of Deps), never the store itself: data goes through the domain.
  {
    files: ['server/http/**'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: "TSTypeReference[typeName.name='Pick'] TSLiteralType > Literal[value='store']",
          message: 'HTTP code reaches the database through the domain services, not the store.',
        },
      ],
    },
  },
  { files: ['public/src/**'], languageOptions: { globals: { ...globals.browser } } },
  // The example integration's page script: a browser module, with the SDK's global from its <script> tag.
  { files: ['examples/*/public/**'], languageOptions: { globals: { ...globals.browser, CvvOps: 'readonly' } } },
  { files: ['**/*.js', '**/*.mjs', '**/*.cjs'], ...tseslint.configs.disableTypeChecked },
  prettier,
);

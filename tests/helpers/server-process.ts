import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { promisify } from 'node:util';

export interface ServerProcess {
  child: ChildProcess;
  port: number;
  base: string;
  stdout(): string;
  stop(): Promise<void>;
}

/** Starts `server/main.ts` as its own process (PORT=0) and resolves once it listens. `nodeArgs`: more Node flags (e.g. `--import` a test module). */
export function startServerProcess(env: Record<string, string>, nodeArgs: string[] = []): Promise<ServerProcess> {
  const child = spawn(process.execPath, [...nodeArgs, '--import', 'tsx', 'server/main.ts'], {
    cwd: process.cwd(),
    env: { ...process.env, NODE_ENV: '', PORT: '0', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stderr.on('data', (b) => (err += b));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`server did not start:\n${out}\n${err}`)), 30_000);
    const onExit = (code: number | null) => reject(new Error(`server exited ${code}:\n${out}\n${err}`));
    child.on('exit', onExit);
    child.stdout.on('data', (b) => {
      out += b;
      const line = out.split('\n').find((l) => l.includes('"msg":"cvvops listening"'));
      if (line) {
        clearTimeout(timer);
        child.off('exit', onExit);
        const port = JSON.parse(line).port as number;
        resolve({
          child,
          port,
          base: `http://127.0.0.1:${port}`,
          stdout: () => out,
          stop: () =>
            new Promise<void>((r) => {
              if (child.exitCode !== null || child.signalCode !== null) return r();
              child.once('exit', () => r());
              child.kill('SIGTERM');
              setTimeout(() => child.kill('SIGKILL'), 5000).unref();
            }),
        });
      }
    });
  });
}

/** Creates a merchant with the CLI (`cvvops merchant create --json`), as an operator would, on the storage `env` names. */
export async function createMerchantWithCli(env: Record<string, string>, name: string): Promise<{ merchantId: string; testKey: string }> {
  const { stdout } = await promisify(execFile)(
    process.execPath,
    ['--import', 'tsx', 'server/cli.ts', 'merchant', 'create', '--name', name, '--origin', 'http://localhost:3000', '--json'],
    { cwd: process.cwd(), env: { ...process.env, NODE_ENV: '', ...env }, timeout: 30_000 },
  );
  return JSON.parse(stdout) as { merchantId: string; testKey: string };
}

// Baseline: Express 5 with express.json() and helmet() answering a small JSON POST
// (the stack's own ceiling). Plain JavaScript run with `node`, like the built server.
import express from 'express';
import helmet from 'helmet';

const app = express();
app.use(helmet());
app.use(express.json());
app.get('/ready', (_req, res) => {
  res.json({ ok: true });
});
app.post('/echo', (req, res) => {
  res.json({ ok: true, name: req.body.name, amount: req.body.amount, items: req.body.items?.length ?? 0 });
});
const server = app.listen(Number(process.env.PORT ?? 0), '127.0.0.1');
server.keepAliveTimeout = 5_000;
process.on('SIGTERM', () => {
  server.close(() => process.exit(0));
  server.closeAllConnections();
});

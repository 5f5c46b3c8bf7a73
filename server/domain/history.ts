import type { HistoryRecord, Mode } from '../store/store.js';
import { isoTime } from './clock.js';
import { secureRandomBase64url } from './random.js';

let seq = 0;
/**
 * An entry's id, in the order entries are made: its time (base 36, 9
 * characters) and a counter of this process, then 96 random bits. The trail
 * is ordered by time, then id, so entries of one millisecond (a manual clock
 * in tests, a fast client) keep the order they were made in.
 */
function historyId(at: number): string {
  seq = (seq + 1) % 36 ** 4;
  return `hst_${Math.max(0, Math.floor(at)).toString(36).padStart(9, '0')}${seq.toString(36).padStart(4, '0')}${secureRandomBase64url(12)}`;
}

/**
 * A session's trail (GET /CvvOperations/{id}/history): one entry per thing
 * that happened to it, written with the change it records. Built only from
 * ids, statuses and codes: nothing secret can reach it.
 */
export function historyEntry(p: {
  session: { id: string; merchantId: string; mode: Mode };
  type: HistoryRecord['type'];
  operation?: string | null;
  outcome?: string | null;
  code?: string | null;
  requestId?: string | null | undefined;
  at: number;
}): HistoryRecord {
  return {
    kind: 'history',
    id: historyId(p.at),
    sessionId: p.session.id,
    merchantId: p.session.merchantId,
    mode: p.session.mode,
    type: p.type,
    operation: p.operation ?? null,
    outcome: p.outcome ?? null,
    code: p.code ?? null,
    requestId: p.requestId ?? null,
    createdAt: p.at,
  };
}

/** What an operation's claim says for its trail: its result status, and a declined charge's decline code. */
export function claimOutcome(claim: Record<string, unknown>): { outcome: string | null; code: string | null } {
  return {
    outcome: typeof claim.status === 'string' ? claim.status : null,
    code: typeof claim.declineCode === 'string' ? claim.declineCode : null,
  };
}

/** An entry as the API shows it. */
export function historyView(h: HistoryRecord) {
  return {
    id: h.id,
    type: h.type,
    createdAt: isoTime(h.createdAt),
    operation: h.operation,
    outcome: h.outcome,
    code: h.code,
    requestId: h.requestId,
  };
}

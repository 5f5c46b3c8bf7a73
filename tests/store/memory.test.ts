import { MemoryStore } from '../../server/store/memory-store.js';
import { storeContract } from './contract.js';

/** The store contract on the in-memory store: the suite every engine passes. */
storeContract('MemoryStore', async () => new MemoryStore());

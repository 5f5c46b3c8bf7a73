import type { Page } from './types.js';

/**
 * What a list method returns: awaiting it gives the first page (`{ data, … }`); iterating it
 * with `for await` gives every item of every page, fetching the next page only when needed.
 * For the lists the server pages (sessions, events, deliveries), `fetchPage` asks for the page
 * after the previous one's last id (`starting_after`) while it says `hasMore`.
 * Nothing is requested until it is awaited or iterated.
 */
export class PagePromise<T, P extends Page<T> = Page<T>> implements PromiseLike<P>, AsyncIterable<T> {
  #first: Promise<P> | null = null;

  constructor(
    private readonly fetchPage: (previous?: P) => Promise<P>,
    private readonly hasNext: (page: P) => boolean = (page) => page.hasMore === true,
  ) {}

  #firstPage(): Promise<P> {
    return (this.#first ??= this.fetchPage());
  }

  then<A = P, B = never>(
    onFulfilled?: ((page: P) => A | PromiseLike<A>) | null,
    onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null,
  ): Promise<A | B> {
    return this.#firstPage().then(onFulfilled, onRejected);
  }

  catch<B = never>(onRejected?: ((reason: unknown) => B | PromiseLike<B>) | null): Promise<P | B> {
    return this.#firstPage().catch(onRejected);
  }

  /** Every page, in order. */
  async *pages(): AsyncGenerator<P, void, undefined> {
    let page = await this.#firstPage();
    yield page;
    while (this.hasNext(page)) {
      page = await this.fetchPage(page);
      yield page;
    }
  }

  async *[Symbol.asyncIterator](): AsyncGenerator<T, void, undefined> {
    for await (const page of this.pages()) yield* page.data;
  }
}

/** A page query: `limit`, and `starting_after` the last id of the page before (or the caller's own cursor). */
export const pageQuery = (
  previous: { data: Array<{ id: string }> } | undefined,
  params: { limit?: number; startingAfter?: string },
  extra: Record<string, string | undefined> = {},
): string => {
  const q = new URLSearchParams();
  if (params.limit !== undefined) q.set('limit', String(params.limit));
  const after = previous ? previous.data.at(-1)?.id : params.startingAfter;
  if (after !== undefined) q.set('starting_after', after);
  for (const [k, v] of Object.entries(extra)) if (v !== undefined) q.set(k, v);
  const s = q.toString();
  return s ? `?${s}` : '';
};

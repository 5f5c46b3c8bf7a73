/** The test cards of API.md section 11: the only cards test keys accept, and the ones live keys refuse. */
export type ThreeDSBehaviour = { kind: 'frictionless'; status: 'Y' | 'A' | 'N' | 'U'; eci: string | null } | { kind: 'challenge'; code: string };
export type ChargeBehaviour = { kind: 'approved' } | { kind: 'declined'; declineCode: string } | { kind: 'error' };

export interface TestCard {
  number: string;
  brand: string;
  threeDS: ThreeDSBehaviour;
  charge: ChargeBehaviour;
}

const card = (number: string, brand: string, threeDS: ThreeDSBehaviour, charge: ChargeBehaviour = { kind: 'approved' }): TestCard => ({
  number,
  brand,
  threeDS,
  charge,
});

export const TEST_CARDS: readonly TestCard[] = [
  card('4000000000001018', 'visa', { kind: 'frictionless', status: 'Y', eci: '05' }),
  card('4000000000002024', 'visa', { kind: 'challenge', code: '123456' }),
  card('4000000000003030', 'visa', { kind: 'frictionless', status: 'N', eci: null }),
  card('4000000000004046', 'visa', { kind: 'frictionless', status: 'A', eci: '06' }),
  card('4000000000005050', 'visa', { kind: 'frictionless', status: 'U', eci: null }),
  card('4000000000006066', 'visa', { kind: 'frictionless', status: 'Y', eci: '05' }, { kind: 'declined', declineCode: 'insufficient_funds' }),
  card('4000000000007072', 'visa', { kind: 'frictionless', status: 'Y', eci: '05' }, { kind: 'declined', declineCode: 'do_not_honor' }),
  card('4000000000008088', 'visa', { kind: 'frictionless', status: 'Y', eci: '05' }, { kind: 'error' }),
  card('5555555555554402', 'mastercard', { kind: 'frictionless', status: 'Y', eci: '02' }),
  card('378282246310005', 'amex', { kind: 'frictionless', status: 'Y', eci: '05' }),
  card('6011111111111117', 'discover', { kind: 'frictionless', status: 'U', eci: null }),
];

const BY_NUMBER = new Map(TEST_CARDS.map((c) => [c.number, c]));

export function findTestCard(number: string): TestCard | undefined {
  return BY_NUMBER.get(number);
}

/** The CVV the simulator expects for a test card. */
export const expectedTestCvv = (brand: string): string => (brand === 'amex' ? '1234' : '123');

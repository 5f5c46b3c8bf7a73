/**
 * The 3-D Secure challenge page's words, in the hosted form's locales (en, fr, de, es): the SDK passes the
 * locale it mounted the form with, so the shopper reads the challenge in the language of the form.
 */
export type ChallengeLocale = 'en' | 'fr' | 'de' | 'es';

export interface ChallengeText {
  title: string;
  heading: string;
  /** The request, with the amount when the session has one (already formatted, HTML-escaped by the view). */
  ask: (amount: string | null) => { before: string; after: string };
  codeLabel: string;
  testHint: string;
  liveHint: string;
  confirm: string;
  outcome: Record<'Y' | 'A' | 'N' | 'U' | 'R', string>;
  finished: string;
  closeHint: string;
  /** Redirect mode: the links back to the shop. */
  backToShop: string;
  cancelToShop: string;
}

const TEXT: Record<ChallengeLocale, ChallengeText> = {
  en: {
    title: 'Verify your payment — 3-D Secure',
    heading: 'Verify your payment',
    ask: (a) =>
      a ? { before: 'Your bank asks you to confirm this payment of ', after: '.' } : { before: 'Your bank asks you to confirm this payment.', after: '' },
    codeLabel: 'One-time code',
    testHint: 'Test mode: the code 123456 succeeds, any other code fails.',
    liveHint: 'Enter the code your bank sent you.',
    confirm: 'Confirm',
    outcome: {
      Y: 'Thank you: the payment is verified.',
      A: 'Thank you: the verification was attempted.',
      N: 'The payment could not be verified.',
      U: 'The verification is unavailable right now.',
      R: 'The bank declined the verification.',
    },
    finished: 'The verification has finished.',
    closeHint: 'You can close this window and return to the shop.',
    backToShop: 'Return to the shop',
    cancelToShop: 'Cancel and return to the shop',
  },
  fr: {
    title: 'Vérifiez votre paiement — 3-D Secure',
    heading: 'Vérifiez votre paiement',
    ask: (a) =>
      a
        ? { before: 'Votre banque vous demande de confirmer ce paiement de ', after: '.' }
        : { before: 'Votre banque vous demande de confirmer ce paiement.', after: '' },
    codeLabel: 'Code à usage unique',
    testHint: 'Mode test : le code 123456 réussit, tout autre code échoue.',
    liveHint: 'Saisissez le code envoyé par votre banque.',
    confirm: 'Confirmer',
    outcome: {
      Y: 'Merci : le paiement est vérifié.',
      A: 'Merci : la vérification a été tentée.',
      N: "Le paiement n'a pas pu être vérifié.",
      U: "La vérification n'est pas disponible pour le moment.",
      R: 'La banque a refusé la vérification.',
    },
    finished: 'La vérification est terminée.',
    closeHint: 'Vous pouvez fermer cette fenêtre et revenir à la boutique.',
    backToShop: 'Revenir à la boutique',
    cancelToShop: 'Annuler et revenir à la boutique',
  },
  de: {
    title: 'Zahlung bestätigen — 3-D Secure',
    heading: 'Zahlung bestätigen',
    ask: (a) =>
      a
        ? { before: 'Ihre Bank bittet Sie, diese Zahlung über ', after: ' zu bestätigen.' }
        : { before: 'Ihre Bank bittet Sie, diese Zahlung zu bestätigen.', after: '' },
    codeLabel: 'Einmalcode',
    testHint: 'Testmodus: Der Code 123456 gelingt, jeder andere Code schlägt fehl.',
    liveHint: 'Geben Sie den Code ein, den Ihre Bank Ihnen gesendet hat.',
    confirm: 'Bestätigen',
    outcome: {
      Y: 'Danke: Die Zahlung ist bestätigt.',
      A: 'Danke: Die Bestätigung wurde versucht.',
      N: 'Die Zahlung konnte nicht bestätigt werden.',
      U: 'Die Bestätigung ist derzeit nicht verfügbar.',
      R: 'Die Bank hat die Bestätigung abgelehnt.',
    },
    finished: 'Die Bestätigung ist abgeschlossen.',
    closeHint: 'Sie können dieses Fenster schließen und zum Shop zurückkehren.',
    backToShop: 'Zurück zum Shop',
    cancelToShop: 'Abbrechen und zurück zum Shop',
  },
  es: {
    title: 'Verifique su pago — 3-D Secure',
    heading: 'Verifique su pago',
    ask: (a) => (a ? { before: 'Su banco le pide que confirme este pago de ', after: '.' } : { before: 'Su banco le pide que confirme este pago.', after: '' }),
    codeLabel: 'Código de un solo uso',
    testHint: 'Modo de prueba: el código 123456 funciona; cualquier otro falla.',
    liveHint: 'Introduzca el código que le ha enviado su banco.',
    confirm: 'Confirmar',
    outcome: {
      Y: 'Gracias: el pago está verificado.',
      A: 'Gracias: se ha intentado la verificación.',
      N: 'No se ha podido verificar el pago.',
      U: 'La verificación no está disponible ahora.',
      R: 'El banco ha rechazado la verificación.',
    },
    finished: 'La verificación ha terminado.',
    closeHint: 'Puede cerrar esta ventana y volver a la tienda.',
    backToShop: 'Volver a la tienda',
    cancelToShop: 'Cancelar y volver a la tienda',
  },
};

/** The locale asked for (the SDK's `locale`, e.g. `fr` or `fr-CA`), or English. */
export function challengeLocale(wanted: unknown): ChallengeLocale {
  const l = typeof wanted === 'string' ? wanted.toLowerCase().slice(0, 2) : '';
  return l === 'fr' || l === 'de' || l === 'es' ? l : 'en';
}

export const challengeText = (locale: ChallengeLocale): ChallengeText => TEXT[locale];

export type Locale = 'en' | 'fr' | 'de' | 'es';

const STRINGS = {
  en: {
    label: 'Security code (CVV)',
    hint: (n: number) => `The ${n} digits on your card.`,
    show: 'Show',
    hide: 'Hide',
    invalid: (n: number) => `Enter the ${n}-digit security code.`,
    collected: 'Security code saved.',
    working: 'Please wait…',
    blocked: 'This card cannot be used right now.',
    expired: 'This payment session has expired.',
    error: 'Something went wrong. Please try again.',
    submit: 'Continue',
    verification: 'Payment verification',
    cancelVerification: 'Cancel the verification',
  },
  fr: {
    label: 'Cryptogramme visuel (CVV)',
    hint: (n: number) => `Les ${n} chiffres au dos de votre carte.`,
    show: 'Afficher',
    hide: 'Masquer',
    invalid: (n: number) => `Saisissez le code de sécurité à ${n} chiffres.`,
    collected: 'Code de sécurité enregistré.',
    working: 'Veuillez patienter…',
    blocked: 'Cette carte ne peut pas être utilisée pour le moment.',
    expired: 'Cette session de paiement a expiré.',
    error: 'Une erreur est survenue. Veuillez réessayer.',
    submit: 'Continuer',
    verification: 'Vérification du paiement',
    cancelVerification: 'Annuler la vérification',
  },
  de: {
    label: 'Kartenprüfnummer (CVV)',
    hint: (n: number) => `Die ${n} Ziffern auf Ihrer Karte.`,
    show: 'Anzeigen',
    hide: 'Verbergen',
    invalid: (n: number) => `Geben Sie die ${n}-stellige Prüfnummer ein.`,
    collected: 'Prüfnummer gespeichert.',
    working: 'Bitte warten…',
    blocked: 'Diese Karte kann derzeit nicht verwendet werden.',
    expired: 'Diese Zahlungssitzung ist abgelaufen.',
    error: 'Etwas ist schiefgelaufen. Bitte versuchen Sie es erneut.',
    submit: 'Weiter',
    verification: 'Zahlungsbestätigung',
    cancelVerification: 'Bestätigung abbrechen',
  },
  es: {
    label: 'Código de seguridad (CVV)',
    hint: (n: number) => `Los ${n} dígitos de su tarjeta.`,
    show: 'Mostrar',
    hide: 'Ocultar',
    invalid: (n: number) => `Introduzca el código de seguridad de ${n} dígitos.`,
    collected: 'Código de seguridad guardado.',
    working: 'Espere, por favor…',
    blocked: 'Esta tarjeta no se puede usar ahora.',
    expired: 'Esta sesión de pago ha caducado.',
    error: 'Algo ha fallado. Inténtelo de nuevo.',
    submit: 'Continuar',
    verification: 'Verificación del pago',
    cancelVerification: 'Cancelar la verificación',
  },
} as const;

export type Strings = (typeof STRINGS)['en'];

export function pickLocale(wanted: string | null | undefined): Locale {
  const l = (wanted ?? '').toLowerCase().slice(0, 2);
  return l === 'fr' || l === 'de' || l === 'es' ? l : 'en';
}

export function strings(locale: Locale): Strings {
  return STRINGS[locale] as Strings;
}

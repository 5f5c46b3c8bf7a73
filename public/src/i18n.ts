export type Locale = 'en' | 'fr' | 'de' | 'es';

const STRINGS = {
  en: {
    label: 'Security code (CVV)',
    hint: (n: number) => (n === 4 ? 'The 4 digits on the front of your card, above the number.' : 'The 3 digits on the back of your card, by the signature.'),
    placeholder: 'CVV',
    picture: (n: number) => (n === 4 ? 'Where to find it: the front of the card' : 'Where to find it: the back of the card'),
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
    hint: (n: number) =>
      n === 4 ? 'Les 4 chiffres au recto de votre carte, au-dessus du numéro.' : 'Les 3 chiffres au dos de votre carte, près de la signature.',
    placeholder: 'CVV',
    picture: (n: number) => (n === 4 ? 'Où le trouver : le recto de la carte' : 'Où le trouver : le dos de la carte'),
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
    hint: (n: number) =>
      n === 4 ? 'Die 4 Ziffern auf der Vorderseite Ihrer Karte, über der Nummer.' : 'Die 3 Ziffern auf der Rückseite Ihrer Karte, beim Unterschriftsfeld.',
    placeholder: 'CVV',
    picture: (n: number) => (n === 4 ? 'Wo Sie sie finden: die Vorderseite der Karte' : 'Wo Sie sie finden: die Rückseite der Karte'),
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
    hint: (n: number) =>
      n === 4 ? 'Los 4 dígitos del anverso de su tarjeta, encima del número.' : 'Los 3 dígitos del reverso de su tarjeta, junto a la firma.',
    placeholder: 'CVV',
    picture: (n: number) => (n === 4 ? 'Dónde encontrarlo: el anverso de la tarjeta' : 'Dónde encontrarlo: el reverso de la tarjeta'),
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

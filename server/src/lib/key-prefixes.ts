/**
 * Fixed, recognisable prefixes so secret scanners (and people) can tell Gatehouse secrets apart
 * and report leaks. Never change a prefix once keys are issued.
 */
export const API_KEY_PREFIX = 'gk';
export const SERVICE_KEY_PREFIX = 'gsk';
export const REFRESH_TOKEN_PREFIX = 'grt';
export const SETUP_TOKEN_PREFIX = 'gst';

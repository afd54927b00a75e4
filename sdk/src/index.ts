export { type ClientOptions, createClient, type GatehouseClient, type User } from './client.js';
export { AuthenticationError, GatehouseError, NetworkError, RateLimitError, ValidationError } from './errors.js';
export { type FeedEvent, RealtimeConnection, type RealtimeOptions, type WebSocketConstructor } from './realtime.js';
export { browserStorage, fileStorage, memoryStorage, type StoredTokens, type TokenStorage } from './storage.js';

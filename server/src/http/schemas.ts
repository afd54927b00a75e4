import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox';
import { type Static, type TSchema, Type } from '@sinclair/typebox';
import type {
  FastifyBaseLogger,
  FastifyInstance,
  RawReplyDefaultExpression,
  RawRequestDefaultExpression,
  RawServerDefault,
} from 'fastify';

/** The Fastify instance every feature registers its routes on. */
export type App = FastifyInstance<
  RawServerDefault,
  RawRequestDefaultExpression,
  RawReplyDefaultExpression,
  FastifyBaseLogger,
  TypeBoxTypeProvider
>;

export const ErrorBody = Type.Object(
  {
    error: Type.Object({
      code: Type.String(),
      message: Type.String(),
      details: Type.Optional(Type.Unknown()),
      requestId: Type.String(),
    }),
  },
  { $id: 'Error' },
);

/** Response entries for the error statuses a route can answer, all with the shared error body. */
export function errors(...statuses: number[]): Record<number, TSchema> {
  return Object.fromEntries(statuses.map((status) => [status, Type.Ref(ErrorBody)]));
}

/**
 * `null` or the schema, for fields where null means "reset" or "unlimited". Written as a type
 * list (`type: ['integer', 'null']`), not anyOf: Ajv coerces types (for query strings), and
 * against anyOf it would turn a JSON null into 0 or "" or, with null first, a 0 into null; with a
 * type list it coerces only a value that matches none of the types.
 */
export function Nullable<T extends TSchema>(schema: T, options: { description?: string } = {}) {
  if (typeof schema.type !== 'string') throw new Error('Nullable() needs a schema with a single type');
  return Type.Unsafe<Static<T> | null>({ ...schema, ...options, type: [schema.type, 'null'] });
}

export const Timestamp = Type.String({ format: 'date-time' });
export const NullableTimestamp = Type.Union([Timestamp, Type.Null()]);

export const PageQuery = Type.Object({
  cursor: Type.Optional(Type.String({ maxLength: 64, description: 'next_cursor from the previous page' })),
  limit: Type.Integer({ minimum: 1, maximum: 200, default: 50 }),
});

export function Page<T extends TSchema>(item: T) {
  return Type.Object({ data: Type.Array(item), next_cursor: Type.Union([Type.String(), Type.Null()]) });
}

export const IdParams = Type.Object({ id: Type.String({ maxLength: 64 }) });

export const Email = Type.String({ format: 'email', maxLength: 254 });
export const Password = Type.String({ minLength: 1, maxLength: 1024 });

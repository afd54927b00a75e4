import { Type } from '@sinclair/typebox';
import { Email, Nullable, Password, Timestamp } from '../../http/schemas.js';
import { IssuedApiKey } from '../api-keys/api-keys.schemas.js';
import { Plan } from '../plans/plans.schemas.js';
import { TokenBudget } from '../usage/usage.schemas.js';

export const User = Type.Object(
  {
    id: Type.String(),
    email: Type.String(),
    name: Type.Union([Type.String(), Type.Null()]),
    role: Type.Union([Type.Literal('user'), Type.Literal('admin'), Type.Literal('operator')]),
    email_verified: Type.Boolean(),
    disabled: Type.Boolean(),
    created_at: Timestamp,
    updated_at: Timestamp,
  },
  { $id: 'User' },
);

/** GET /api/auth/me: the user and the plan that applies to them. */
export const Me = Type.Composite([
  User,
  Type.Object({
    plan: Type.Ref(Plan),
    usage: Type.Ref(TokenBudget, { description: "Seed 001's tokens_used, tokens_remaining and monthly_limit" }),
  }),
]);

export const TokenPair = {
  access_token: Type.String(),
  refresh_token: Type.String(),
  token_type: Type.Literal('bearer'),
  expires_in: Type.Integer({ description: 'Access token lifetime, seconds' }),
};

export const RegisterBody = Type.Object(
  { email: Email, password: Password, name: Type.Optional(Type.String({ maxLength: 200 })) },
  { additionalProperties: false },
);

export const RegisterResponse = Type.Object({ user: Type.Ref(User), ...TokenPair, api_key: IssuedApiKey });

/**
 * JSON `{email, password}` or the OAuth2-password-style form `username`/`password` (seed 001), with
 * the other fields of that form (RFC 6749 §4.3.2, client fields per §2.3.1) accepted and ignored.
 * Anything else is a 400 naming it, as on every other route.
 */
export const LoginBody = Type.Object(
  {
    email: Type.Optional(Email),
    username: Type.Optional(Type.String({ maxLength: 254 })),
    password: Password,
    grant_type: Type.Optional(Type.Literal('password')),
    scope: Type.Optional(Type.String({ maxLength: 1000 })),
    client_id: Type.Optional(Type.String({ maxLength: 200 })),
    client_secret: Type.Optional(Type.String({ maxLength: 200 })),
  },
  { additionalProperties: false },
);

export const LoginResponse = Type.Object({ ...TokenPair, user: Type.Ref(User) });

export const UpdateMeBody = Type.Object(
  { name: Type.Optional(Nullable(Type.String({ maxLength: 200 }))) },
  { additionalProperties: false },
);

export const ChangePasswordBody = Type.Object(
  { current_password: Password, new_password: Password },
  { additionalProperties: false },
);

export const AdminUserPatch = Type.Object(
  {
    name: Type.Optional(Nullable(Type.String({ maxLength: 200 }))),
    role: Type.Optional(Type.Union([Type.Literal('user'), Type.Literal('admin')])),
    disabled: Type.Optional(Type.Boolean()),
  },
  { additionalProperties: false },
);

export const ImportUsersBody = Type.Object(
  {
    users: Type.Array(
      Type.Object(
        {
          email: Email,
          name: Type.Optional(Type.String({ maxLength: 200 })),
          password_hash: Type.Optional(Type.String({ description: 'argon2id or bcrypt ($2a$/$2b$/$2y$) hash' })),
          email_verified: Type.Optional(Type.Boolean()),
        },
        { additionalProperties: false },
      ),
      { minItems: 1, maxItems: 1000 },
    ),
  },
  { additionalProperties: false },
);

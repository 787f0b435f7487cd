-- Branding: what a company shows its site owners (name, contact details, a logo). The logo is stored
-- re-encoded as PNG (PostgreSQL: BYTEA) and served under an unguessable key that changes with each upload.
ALTER TABLE companies ADD COLUMN contact_email TEXT NOT NULL DEFAULT '';
ALTER TABLE companies ADD COLUMN contact_phone TEXT NOT NULL DEFAULT '';
ALTER TABLE companies ADD COLUMN website TEXT NOT NULL DEFAULT '';
ALTER TABLE companies ADD COLUMN address TEXT NOT NULL DEFAULT '';
ALTER TABLE companies ADD COLUMN logo BLOB;
ALTER TABLE companies ADD COLUMN logo_key TEXT;
ALTER TABLE companies ADD COLUMN logo_updated_at BIGINT;
CREATE UNIQUE INDEX companies_logo_key ON companies (logo_key);

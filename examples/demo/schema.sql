-- Sample schema for the demo database `shop`, used by the examples, the test harness
-- (dbward-testkit loads it as the application role `app`) and the benchmarks.
--
-- Every value is deterministic (no random()), so tests can assert exact rows:
--   public.customers    300 rows; customer N has email customerN@example.com, a 16-digit Luhn-valid
--                       Visa test card number 4111 + N zero-padded to 11 digits + check digit
--                       (customer 1: 4111000000000016), an SSN-like value (customer 1: 123-45-6789),
--                       a phone number except when N is a multiple of 10 (270 phones), a country.
--   public.products     50 rows
--   public.orders       1000 rows, totals equal the sum of their items
--   public.order_items  2000 rows (1 to 3 per order)
--   billing.invoices    600 rows, one per order that is paid, shipped or delivered
--
-- Plain SQL (no psql meta-commands) in one transaction; run it on a fresh database.

BEGIN;

CREATE TABLE public.customers (
    id          bigserial PRIMARY KEY,
    full_name   text NOT NULL,
    email       text NOT NULL UNIQUE,
    phone       text,
    card_number text NOT NULL,
    ssn         text NOT NULL,
    country     text NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE public.products (
    id    bigserial PRIMARY KEY,
    name  text NOT NULL UNIQUE,
    price numeric(10, 2) NOT NULL CHECK (price >= 0)
);

CREATE TABLE public.orders (
    id          bigserial PRIMARY KEY,
    customer_id bigint NOT NULL REFERENCES public.customers (id),
    total       numeric(10, 2) NOT NULL DEFAULT 0,
    status      text NOT NULL
        CHECK (status IN ('pending', 'paid', 'shipped', 'delivered', 'cancelled')),
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX orders_customer_id_idx ON public.orders (customer_id);

CREATE TABLE public.order_items (
    id         bigserial PRIMARY KEY,
    order_id   bigint NOT NULL REFERENCES public.orders (id) ON DELETE CASCADE,
    product_id bigint NOT NULL REFERENCES public.products (id),
    quantity   integer NOT NULL CHECK (quantity > 0),
    unit_price numeric(10, 2) NOT NULL
);
CREATE INDEX order_items_order_id_idx ON public.order_items (order_id);

CREATE VIEW public.customer_contacts AS
    SELECT full_name, email FROM public.customers;

CREATE FUNCTION public.customer_email(customer_id bigint) RETURNS text
    LANGUAGE sql STABLE
    AS $$ SELECT email FROM public.customers WHERE id = customer_id $$;

CREATE SCHEMA IF NOT EXISTS billing;

CREATE TABLE billing.invoices (
    id          bigserial PRIMARY KEY,
    order_id    bigint NOT NULL UNIQUE REFERENCES public.orders (id),
    customer_id bigint NOT NULL REFERENCES public.customers (id),
    amount      numeric(10, 2) NOT NULL,
    currency    text NOT NULL DEFAULT 'EUR',
    issued_at   timestamptz NOT NULL,
    paid_at     timestamptz
);

-- Customers. The card number is a 15-digit payload (4111 + id padded to 11 digits) followed by its
-- Luhn check digit: digits of the payload are taken from the right, every first, third, ... one is
-- doubled (minus 9 when over 9), and the check digit brings the sum to a multiple of 10.
INSERT INTO public.customers (id, full_name, email, phone, card_number, ssn, country, created_at)
SELECT
    n,
    (ARRAY['Alice', 'Bruno', 'Chloe', 'Dmitri', 'Elena', 'Farid', 'Grace', 'Hiro', 'Ines', 'Jonas',
           'Kemal', 'Lucia', 'Mateo', 'Nadia', 'Oscar', 'Priya', 'Quentin', 'Rosa', 'Sven', 'Tara'])
        [1 + n % 20]
    || ' ' ||
    (ARRAY['Anderson', 'Bianchi', 'Chen', 'Dubois', 'Eriksen', 'Fischer', 'Garcia', 'Haddad',
           'Ivanova', 'Jansen', 'Kowalski', 'Lopez', 'Moreau', 'Novak', 'Okafor', 'Petrov', 'Rossi'])
        [1 + (n * 7) % 17],
    'customer' || n || '@example.com',
    CASE WHEN n % 10 = 0 THEN NULL
         ELSE '+1-555-' || lpad(((n * 37) % 1000)::text, 3, '0') || '-' || lpad(((n * 7919) % 10000)::text, 4, '0')
    END,
    payload || ((10 - luhn.total % 10) % 10)::text,
    CASE WHEN n = 1 THEN '123-45-6789'
         ELSE lpad((100 + (n * 7) % 800)::text, 3, '0') || '-' || lpad((1 + (n * 13) % 99)::text, 2, '0')
              || '-' || lpad((1 + (n * 7919) % 9999)::text, 4, '0')
    END,
    (ARRAY['US', 'DE', 'FR', 'GB', 'ES', 'IT', 'NL', 'SE', 'PL', 'JP'])[1 + n % 10],
    timestamptz '2024-01-01 00:00:00+00' + n * interval '7 hours 13 minutes'
FROM generate_series(1, 300) AS n
CROSS JOIN LATERAL (SELECT '4111' || lpad(n::text, 11, '0') AS payload) AS p
CROSS JOIN LATERAL (
    SELECT sum(CASE WHEN i % 2 = 1
                    THEN (d * 2) - CASE WHEN d * 2 > 9 THEN 9 ELSE 0 END
                    ELSE d END)::int AS total
    FROM generate_series(1, 15) AS i,
         LATERAL (SELECT substr(p.payload, 16 - i, 1)::int AS d) AS digit
) AS luhn;

-- Products: 5 adjectives x 10 nouns, prices between 2.50 and 249.50.
INSERT INTO public.products (id, name, price)
SELECT
    n,
    (ARRAY['Classic', 'Compact', 'Deluxe', 'Rugged', 'Wireless'])[1 + (n - 1) / 10]
        || ' ' ||
    (ARRAY['Kettle', 'Lamp', 'Backpack', 'Headphones', 'Notebook', 'Mug', 'Keyboard', 'Umbrella',
           'Blender', 'Speaker'])[1 + (n - 1) % 10],
    round(2.50 + ((n * 53) % 248)::numeric, 2)
FROM generate_series(1, 50) AS n;

INSERT INTO public.orders (id, customer_id, status, created_at)
SELECT
    n,
    1 + (n * 37) % 300,
    (ARRAY['pending', 'paid', 'shipped', 'delivered', 'cancelled'])[1 + n % 5],
    timestamptz '2024-03-01 00:00:00+00' + n * interval '2 hours 31 minutes'
FROM generate_series(1, 1000) AS n;

INSERT INTO public.order_items (order_id, product_id, quantity, unit_price)
SELECT o.id, pr.id, 1 + (o.id + k) % 4, pr.price
FROM public.orders AS o
CROSS JOIN LATERAL generate_series(1, 1 + o.id::int % 3) AS k
JOIN public.products AS pr ON pr.id = 1 + (o.id * 7 + k * 11) % 50
ORDER BY o.id, k;

UPDATE public.orders AS o
SET total = items.total
FROM (SELECT order_id, sum(quantity * unit_price) AS total
      FROM public.order_items GROUP BY order_id) AS items
WHERE items.order_id = o.id;

INSERT INTO billing.invoices (order_id, customer_id, amount, currency, issued_at, paid_at)
SELECT
    o.id,
    o.customer_id,
    o.total,
    CASE WHEN c.country = 'US' THEN 'USD' WHEN c.country = 'GB' THEN 'GBP'
         WHEN c.country = 'SE' THEN 'SEK' WHEN c.country = 'PL' THEN 'PLN'
         WHEN c.country = 'JP' THEN 'JPY' ELSE 'EUR' END,
    o.created_at + interval '1 hour',
    CASE WHEN o.status IN ('paid', 'shipped', 'delivered') THEN o.created_at + interval '1 day' END
FROM public.orders AS o
JOIN public.customers AS c ON c.id = o.customer_id
WHERE o.status IN ('paid', 'shipped', 'delivered')
ORDER BY o.id;

-- Explicit ids above: move the sequences past them so later inserts get fresh ids.
SELECT
    setval(pg_get_serial_sequence('public.customers', 'id'), (SELECT max(id) FROM public.customers)),
    setval(pg_get_serial_sequence('public.products', 'id'), (SELECT max(id) FROM public.products)),
    setval(pg_get_serial_sequence('public.orders', 'id'), (SELECT max(id) FROM public.orders));

COMMIT;

ANALYZE public.customers, public.products, public.orders, public.order_items, billing.invoices;

-- Webhook endpoints (issue 20): an institution's or an ISP desk's, each
-- receiving the event types it asked for, signed with its secret (and,
-- during a rotation's grace period, the previous one too).
CREATE TABLE webhooks (
    id                          uuid PRIMARY KEY,
    institution_id              uuid REFERENCES institutions (id),
    isp                         text REFERENCES isps (code),
    url                         text NOT NULL,
    event_types                 text[] NOT NULL,
    -- `whsec_` + base64: it must sign, so it is kept as given out.
    secret                      text NOT NULL,
    previous_secret             text,
    previous_secret_expire_time timestamptz,
    -- Deliveries stop: the endpoint answered 410 Gone.
    disable_time                timestamptz,
    disable_reason              text,
    delete_time                 timestamptz,
    create_time                 timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT webhooks_one_owner CHECK ((institution_id IS NULL) <> (isp IS NULL))
);
CREATE INDEX webhooks_institution_idx ON webhooks (institution_id) WHERE delete_time IS NULL;
CREATE INDEX webhooks_isp_idx ON webhooks (isp) WHERE delete_time IS NULL;

#!/usr/bin/env bash
# The README walk-through as a script: enrol, submit, attest, upload and verify
# the documents, approve, read the history. Run it against a fresh `scripts/run` (it adds the ISP ptcl).
# Uses buf (scripts/buf installs it) and python3 for picking fields from JSON.
# REGISTRY (default 127.0.0.1:50051) is where the service listens; DATABASE_URL
# the database the admin commands use (default the one scripts/run makes).
cd "$(dirname "$0")/.."
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/vpn_registry}"
REGISTRY="${REGISTRY:-127.0.0.1:50051}"
cargo build -q --release --locked --bin vpn-registry
set -euo pipefail
vr() { ./target/release/vpn-registry "$@"; }
buf() { scripts/buf "$@"; }
api() { buf curl --protocol grpc --http2-prior-knowledge -H "authorization: Bearer $1" -d "$3" "http://$REGISTRY/vpnregistry.v1.$2"; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print(eval('d'+sys.argv[1]))" "$1"; }
vr isp add ptcl --name "Pakistan Telecommunication Company Ltd"
ADMIN=$(vr token issue --role admin --name "registry desk")
REVIEWER=$(vr token issue --role reviewer --name "reviewer 1")
PTCL=$(vr token issue --role isp --isp ptcl --name "PTCL attestation desk")
INST=$(api $ADMIN InstitutionService/CreateInstitution '{"request_id":"enrol-0001","institution":{"category":"INSTITUTION_CATEGORY_BANK","legal_name":"Demo Bank Ltd","cnic":"35202-1234567-1","ntn":"1234567-8","sbp_licence":"SBP/123","contact_email":"ops@demo.pk","contact_phone":"0300 1234567"}}' | field '["id"]')
BANK=$(vr token issue --role institution --institution $INST --name "Demo Bank back office")
REG=$(api $BANK RegistrationService/SubmitRegistration '{"request_id":"sub-0001","registration":{"kind":"REGISTRATION_KIND_VPN","protocol":"VPN_PROTOCOL_WIREGUARD","source_prefixes":["203.0.114.0/24"],"peer_prefixes":["185.60.216.0/24"],"isp":"ptcl","isp_subscriber_id":"PTCL-778812","purpose":"Branch-to-head-office VPN","valid_until":"2027-12-31T00:00:00Z"}}' | field '["id"]')
api $PTCL IspService/ListPendingAttestations '{}'
ETAG=$(api $PTCL IspService/ListPendingAttestations '{}' | field '["attestations"][0]["etag"]')
api $PTCL IspService/AttestRegistration "{\"id\":\"$REG\",\"etag\":\"$ETAG\",\"confirmed\":true}" | field '["state"]'
# The bank's documents (a one-page PDF each, here), each verified by the reviewer:
# approval needs every one its category and kind require.
PDF=$(printf '%%PDF-1.4\n1 0 obj<<>>endobj\ntrailer<<>>\n%%%%EOF\n' | base64 -w0)
SIZE=$(printf '%s' "$PDF" | base64 -d | wc -c)
for T in CNIC_FRONT CNIC_BACK INCORPORATION_LETTER SBP_LICENCE_LETTER; do
  DOC=$(printf '{"header":{"registration_id":"%s","type":"DOCUMENT_TYPE_%s","file_name":"%s.pdf","request_id":"doc-%s","size_bytes":"%s"}}\n{"content":"%s"}\n' \
          "$REG" "$T" "$T" "$T" "$SIZE" "$PDF" \
        | buf curl --protocol grpc --http2-prior-knowledge -H "authorization: Bearer $BANK" -d @- \
            http://$REGISTRY/vpnregistry.v1.DocumentService/UploadDocument | field '["id"]')
  api $REVIEWER DocumentService/VerifyDocument "{\"id\":\"$DOC\",\"status\":\"DOCUMENT_STATUS_VERIFIED\"}" | field '["status"]'
done
ETAG=$(api $REVIEWER ReviewService/ListReviewQueue '{}' | field '["registrations"][0]["etag"]')
api $REVIEWER ReviewService/ApproveRegistration "{\"id\":\"$REG\",\"etag\":\"$ETAG\",\"reason_code\":\"REASON_CODE_COMPLIANT\",\"reason\":\"Documents verified\"}" | field '["state"], d["feedSerial"]'
api $BANK RegistrationService/ListRegistrationEvents "{\"id\":\"$REG\"}" | python3 -c 'import json,sys; [print(e["action"], e.get("fromState"), "->", e.get("toState"), e["actor"]["name"]) for e in json.load(sys.stdin)["events"]]'

#!/usr/bin/env bash
# Fills the fuzz corpora from the report fixtures (tests/fixtures/trivy-operator/) plus a
# few hand-written shapes: every container (List, bare array, CRD-plural map, multi-document
# YAML, alternate-storage bare body) and the template/config inputs. Safe to re-run: files
# are named by content hash, so nothing is duplicated.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
fixtures="$here/../tests/fixtures/trivy-operator"
parse="$here/corpus/parse_reports"
templates="$here/corpus/templates"
config="$here/corpus/config"
mkdir -p "$parse" "$templates" "$config"

add() { # add DIR < content
    local tmp sum
    tmp="$(mktemp)"
    cat >"$tmp"
    sum="$(sha1sum "$tmp" | cut -c1-40)"
    mv "$tmp" "$1/$sum"
}

n=0
while IFS= read -r -d '' f; do
    add "$parse" <"$f"
    n=$((n + 1))
done < <(find "$fixtures" -type f \( -name '*.json' -o -name '*.yaml' -o -name '*.yml' \) -print0)

add "$parse" <<<'{"apiVersion":"v1","kind":"List","items":[{"kind":"VulnerabilityReport","metadata":{"name":"replicaset-api-7cc565547-app","namespace":"shop","labels":{"trivy-operator.container.name":"app"},"ownerReferences":[{"kind":"ReplicaSet","name":"api-7cc565547","controller":true}]},"report":{"updateTimestamp":"2026-10-01T10:00:00Z","registry":{"server":"index.docker.io"},"artifact":{"repository":"library/nginx","tag":"1.25","digest":"sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"},"summary":{"criticalCount":1},"vulnerabilities":[{"vulnerabilityID":"CVE-1","resource":"libssl","installedVersion":"1.1","fixedVersion":"1.2","severity":"CRITICAL","score":9.8,"title":"t","primaryLink":"https://x","links":["https://y"],"publishedDate":"2023-03-01T00:00:00Z"}]}}]}'
add "$parse" <<<'[{"kind":"ExposedSecretReport","metadata":{"name":"s","namespace":"n"},"report":{"artifact":{"repository":"app"},"secrets":[{"ruleID":"aws-access-key-id","target":"/etc/x","title":"AWS","category":"AWS","severity":"CRITICAL","match":"AKIA****"}]}}]'
add "$parse" <<<'{"vulnerabilityreports.aquasecurity.github.io":[{"vulnerabilities":[]}],"configauditreports":[{"checks":[{"checkID":"KSV014","title":"Root","severity":"danger","success":false,"messages":["m"]}]}]}'
add "$parse" <<<'{"scanner":{"name":"Trivy","version":"0.50"},"checks":null}'
add "$parse" <<<'{"kind":"Namespace","metadata":{"name":"shop","labels":{"team":"a"},"annotations":{"trivy-digest.io/product":"p"}}}'
add "$parse" <<<'{"kind":"ClusterComplianceReport","metadata":{"name":"cis"},"status":{"summaryReport":{"controlCheck":[{"id":"1.1","name":"n","severity":"HIGH","totalFail":2}]}}}'
printf -- '---\nkind: ConfigAuditReport\nmetadata:\n  name: x\n  labels:\n    report-historical: true\nreport:\n  checks:\n  - checkID: AVD-KSV-0014\n    success: false\n---\n# empty\n---\nitems:\n- kind: Pod\n- kind: RbacAssessmentReport\n  report:\n    checks: []\n' | add "$parse"
printf 'a: &a [1, 2]\nb: *a\nkind: SbomReport\nreport:\n  artifact: {repository: r}\n  components: {components: [*a, *a]}\n' | add "$parse"

for t in 'Kubernetes' '{{ cluster }}' '{{ subject }}' 'trivy-digest' \
    '{{ annotation:trivy-digest.io/product | label:team | cluster }}' \
    'team-{{ label:team | "shared" }} {{ namespace }}/{{ workload_kind }}/{{ workload_name }}'; do
    printf '%s\0prod\0docker.io/library/nginx\0vulnerability\0docker.io\0library/nginx\0shop\0Deployment\0api\0team=a\0trivy-digest.io/product=p' "$t" | add "$templates"
done

printf 'cluster: prod\nstore: /var/lib/trivy-digest.db\ngrace_period: 36h\ndefectdojo:\n  url: https://dojo.example\n  token_file: /run/secrets/token\n  product_type: Kubernetes\n  product: "{{ annotation:trivy-digest.io/product | cluster }}"\n  engagement: trivy-digest\n  test: "{{ subject }}"\n  families: [vulnerability, secret, config-audit]\n  tags: [a, b]\n  concurrency: 4\n  timeout: 2m\n  retry:\n    max_attempts: 3\n    initial_backoff: 1s\n    max_backoff: 1m\n  deduplication_execution_mode: sync\n' | add "$config"

echo "parse_reports: $(ls "$parse" | wc -l) inputs ($n fixtures); templates: $(ls "$templates" | wc -l); config: $(ls "$config" | wc -l)"

"""Checks what template.yaml promises, on the template as SAM translates it.

Linters check that the template is valid CloudFormation; this checks that
it is the one the code and the contract expect: every route reaches its
function behind the authorizer, the authorizer's identity sources follow
the cache setting, only dicom/ notifies the indexer, every function is an
arm64 cargo-lambda build, every setting the code reads is set, only the
functions that load the secrets may read them, and each policy stays
narrow. Run by scripts/check-template; exits 1 on a finding.
"""

import copy
import logging
import os
import re
import sys

from samtranslator.translator.transform import transform
from samtranslator.yaml_helper import yaml_parse

# (method, path, function) of every route of the contract.
ROUTES = [
    ("post", "/api/hospitals/register", "RegisterHospitalFunction"),
    ("get", "/api/hospitals", "ManageHospitalFunction"),
    ("get", "/api/hospitals/{hospitalId}", "ManageHospitalFunction"),
    ("patch", "/api/hospitals/{hospitalId}", "ManageHospitalFunction"),
    ("post", "/api/hospitals/{hospitalId}/keys", "ManageHospitalFunction"),
    ("get", "/api/hospitals/{hospitalId}/keys", "ManageHospitalFunction"),
    ("delete", "/api/hospitals/{hospitalId}/keys/{keyId}", "ManageHospitalFunction"),
    ("post", "/api/hospitals/{hospitalId}/users", "ManageHospitalFunction"),
    ("get", "/api/hospitals/{hospitalId}/users", "ManageHospitalFunction"),
    ("post", "/api/hospitals/{hospitalId}/grants", "ManageHospitalFunction"),
    ("get", "/api/hospitals/{hospitalId}/grants", "ManageHospitalFunction"),
    ("delete", "/api/hospitals/{hospitalId}/grants/{granteeId}", "ManageHospitalFunction"),
    ("get", "/api/usage", "ManageHospitalFunction"),
    ("get", "/api/audit", "ManageHospitalFunction"),
    ("post", "/api/agents/register", "AgentHeartbeatFunction"),
    ("post", "/api/uploads", "PresignUploadFunction"),
    ("get", "/api/uploads/{uploadId}", "PresignUploadFunction"),
    ("get", "/api/studies", "QueryStudiesFunction"),
    ("get", "/api/studies/{studyUid}", "QueryStudiesFunction"),
    ("get", "/api/studies/{studyUid}/download", "QueryStudiesFunction"),
    ("post", "/api/studies/{studyUid}/shares", "ShareStudyFunction"),
    ("delete", "/api/studies/{studyUid}/shares/{hospitalId}", "ShareStudyFunction"),
    ("x-amazon-apigateway-any-method", "/dicomweb/{proxy+}", "DicomWebFunction"),
]

# Functions that load the secrets (Context::secrets or secrets_for_route,
# directly or through shared::studies::list_studies / audit::list_audit):
# loading reads the pepper and the platform-admin key together, so these
# need GetSecretValue on both, and no other function may have it.
SECRET_READERS = {
    "AuthorizerFunction",
    "RegisterHospitalFunction",
    "ManageHospitalFunction",
    "QueryStudiesFunction",
}
SECRETS = {"PepperSecret", "PlatformAdminKeySecret"}

# Partitions other than a hospital's that a function's DynamoDB statements
# may name in dynamodb:LeadingKeys: the gsi1 HOSPITALS partition, the only
# list of hospitals (listing them, and the stable-study sweep).
NON_HOSPITAL_PARTITIONS = {
    "ManageHospitalFunction": {"HOSPITALS"},
    "StableStudiesFunction": {"HOSPITALS"},
}

# Functions run on a schedule, and their binaries.
SCHEDULED = {"StableStudiesFunction": "stable-studies"}

# Read by shared/src/config.rs but set only on the local stack.
LOCAL_ONLY_SETTINGS = {"SECRETS_FILE", "DYNAMODB_ENDPOINT", "S3_ENDPOINT", "EVENTS_ENDPOINT"}

findings = []


def check(ok, message):
    if not ok:
        findings.append(message)


class NoManagedPolicies:
    """The template names no managed policy, so none need looking up."""

    def load(self):
        return {}


def resolve_authorizer_identity(template, cache_seconds):
    """Does what AWS::LanguageExtensions does to the one Fn::If it serves."""
    t = copy.deepcopy(template)
    auth = t["Resources"]["PacsApi"]["Properties"]["Auth"]["Authorizers"]["ApiKeyAuthorizer"]
    identity = auth["Identity"]
    if isinstance(identity, dict) and "Fn::If" in identity:
        cond, when_true, when_false = identity["Fn::If"]
        check(cond == "CacheAuthorizer", f"authorizer identity depends on {cond}")
        identity = copy.deepcopy(when_true if cache_seconds != 0 else when_false)
        ttl = identity.get("ReauthorizeEvery")
        if isinstance(ttl, dict) and "Fn::FindInMap" in ttl:
            name, key, attr = ttl["Fn::FindInMap"]
            identity["ReauthorizeEvery"] = t["Mappings"][name][str(cache_seconds)][attr]
        auth["Identity"] = identity
    t["Transform"] = "AWS::Serverless-2016-10-31"
    for res in t["Resources"].values():
        if res["Type"] == "AWS::Serverless::Function":
            res["Properties"]["CodeUri"] = "s3://bucket/key.zip"
    return t


def translate(template, cache_seconds):
    t = resolve_authorizer_identity(template, cache_seconds)
    params = {"AuthorizerCacheSeconds": str(cache_seconds)}
    return transform(t, params, NoManagedPolicies())


def function_of(integration):
    uri = integration.get("uri", {})
    text = repr(uri)
    m = re.search(r"'(\w+Function)', 'Arn'", text) or re.search(r"\$\{(\w+Function)\.Arn\}", text)
    return m.group(1) if m else None


def check_api(cfn, cache_seconds):
    body = cfn["Resources"]["PacsApi"]["Properties"]["Body"]
    paths = body["paths"]
    schemes = body["components"]["securitySchemes"]
    authorizer = schemes["ApiKeyAuthorizer"]["x-amazon-apigateway-authorizer"]

    check(authorizer["type"] == "request", "the authorizer is not a REQUEST authorizer")
    ttl = authorizer.get("authorizerResultTtlInSeconds")
    check(ttl == cache_seconds and isinstance(ttl, int), f"authorizer TTL is {ttl!r}")
    sources = authorizer.get("identitySource")
    if cache_seconds == 0:
        # Any identity source would make API Gateway refuse a Bearer-only
        # request before the authorizer sees it.
        check(not sources, f"uncached authorizer has identity sources {sources!r}")
    else:
        check(
            sources and "method.request.header.x-api-key" in sources,
            f"cached authorizer must key on x-api-key, has {sources!r}",
        )
        check(
            sources and "context.identity.sourceIp" in sources,
            "cached authorizer must key on the source IP (allowedIPs)",
        )

    for method, path, function in ROUTES:
        op = paths.get(path, {}).get(method)
        check(op is not None, f"route {method} {path} is missing")
        if op is None:
            continue
        integration = op.get("x-amazon-apigateway-integration", {})
        check(integration.get("type") == "aws_proxy", f"{method} {path} is not a Lambda proxy")
        check(function_of(integration) == function, f"{method} {path} does not reach {function}")
        check(
            op.get("security") == [{"ApiKeyAuthorizer": []}],
            f"{method} {path} is not behind the authorizer",
        )

    for path, ops in paths.items():
        for method, op in ops.items():
            if method == "options":
                check(not op.get("security"), f"preflight OPTIONS {path} requires a key")
            elif (method, path) not in {(m, p) for m, p, _ in ROUTES}:
                findings.append(f"route {method} {path} is not in the contract")
    check("options" in paths.get("/dicomweb/{proxy+}", {}), "no CORS preflight for /dicomweb")

    responses = body.get("x-amazon-apigateway-gateway-responses", {})
    for kind, status in [("UNAUTHORIZED", "401"), ("ACCESS_DENIED", "403")]:
        r = responses.get(kind, {})
        check(r.get("statusCode") == status, f"gateway response {kind} is not {status}")
        check(
            '"success":false' in r.get("responseTemplates", {}).get("application/json", ""),
            f"gateway response {kind} is not in the contract's error shape",
        )
    denied = responses.get("ACCESS_DENIED", {}).get("responseTemplates", {})
    check(
        "$context.authorizer.code" in denied.get("application/json", ""),
        "ACCESS_DENIED does not pass the authorizer's code on",
    )
    for kind in ["DEFAULT_4XX", "DEFAULT_5XX"]:
        check(kind in responses, f"gateway response {kind} is not set")


def settings_read_by_code(root):
    src = open(os.path.join(root, "shared", "src", "config.rs")).read()
    names = set(re.findall(r'(?:required|optional|number)\(\s*"([A-Z][A-Z0-9_]*)"', src))
    # RUST_LOG is read by the tracing filter, not by Settings.
    return (names - LOCAL_ONLY_SETTINGS) | {"RUST_LOG"}


def check_functions(template, cfn, root):
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    for name in sorted(settings_read_by_code(root)):
        check(name in env, f"setting {name} (shared/src/config.rs) is not in Globals")

    for logical, res in template["Resources"].items():
        if res["Type"] != "AWS::Serverless::Function":
            continue
        meta = res.get("Metadata", {})
        binary = meta.get("Binary")
        code_uri = res["Properties"].get("CodeUri", "")
        check(meta.get("BuildMethod") == "rust-cargolambda", f"{logical} is not a cargo-lambda build")
        # A binary is a crate's main (functions/{binary}) or one of its
        # src/bin targets.
        crate = os.path.join(root, str(code_uri))
        check(
            code_uri == f"functions/{binary}"
            or os.path.exists(os.path.join(crate, "src", "bin", f"{binary}.rs")),
            f"{logical}: binary {binary} is not built by crate {code_uri}",
        )
        check(
            str(code_uri).startswith("functions/")
            and os.path.exists(os.path.join(crate, "Cargo.toml")),
            f"{logical}: no crate {code_uri}",
        )
        events = res["Properties"].get("Events", {})
        scheduled = any(e.get("Type") == "Schedule" for e in events.values())
        check(
            scheduled == (logical in SCHEDULED) and SCHEDULED.get(logical, binary) == binary,
            f"{logical}: scheduled is {scheduled}, wants {logical in SCHEDULED}",
        )

        fn = cfn["Resources"][logical]["Properties"]
        check(fn.get("Runtime") == "provided.al2023", f"{logical} runtime is {fn.get('Runtime')}")
        check(fn.get("Architectures") == ["arm64"], f"{logical} is not arm64")
        check(fn.get("Handler") == "bootstrap", f"{logical} handler is not bootstrap")

        role = cfn["Resources"].get(f"{logical}Role", {}).get("Properties", {})
        check_secrets(logical, code_uri, role, root)
        for policy in role.get("Policies", []):
            for st in policy["PolicyDocument"]["Statement"]:
                actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
                resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
                for a in actions:
                    check(not a.endswith("*"), f"{logical}: wildcard action {a}")
                    # No request path scans (docs/data-model.md), and a Scan
                    # would pass a ForAllValues LeadingKeys condition.
                    check(a != "dynamodb:Scan", f"{logical} may Scan")
                check("*" not in resources, f"{logical}: statement {st.get('Sid')} on every resource")
                if any(a.startswith("dynamodb:") for a in actions):
                    cond = st.get("Condition", {}).get("ForAllValues:StringLike", {})
                    leading = cond.get("dynamodb:LeadingKeys", [])
                    allowed = {"hosp_*"} | NON_HOSPITAL_PARTITIONS.get(logical, set())
                    check(
                        bool(leading) and set(leading) <= allowed,
                        f"{logical}: DynamoDB statement {st.get('Sid')} has LeadingKeys "
                        f"{leading}, wants hosp_* (or {sorted(allowed - {'hosp_*'})})",
                    )


def calls_secrets(root, code_uri):
    """Whether a function crate's own sources load the secrets directly."""
    src = os.path.join(root, str(code_uri), "src")
    for dirpath, _, files in os.walk(src):
        for f in files:
            if f.endswith(".rs"):
                text = open(os.path.join(dirpath, f)).read()
                if re.search(r"\.secrets(_for_route)?\(\)", text):
                    return True
    return False


def check_secrets(logical, code_uri, role, root):
    readable = set()
    for policy in role.get("Policies", []):
        for st in policy["PolicyDocument"]["Statement"]:
            actions = st["Action"] if isinstance(st["Action"], list) else [st["Action"]]
            if "secretsmanager:GetSecretValue" not in actions:
                continue
            resources = st["Resource"] if isinstance(st["Resource"], list) else [st["Resource"]]
            for r in resources:
                readable.add(r.get("Ref") if isinstance(r, dict) else r)
    if logical in SECRET_READERS:
        check(readable == SECRETS, f"{logical} loads the secrets but reads {sorted(readable)}")
    else:
        check(not readable, f"{logical} never loads the secrets but may read {sorted(readable)}")
        check(
            not calls_secrets(root, code_uri),
            f"{logical} calls secrets() but is not in SECRET_READERS",
        )


def check_bucket(cfn):
    bucket = cfn["Resources"]["DicomBucket"]["Properties"]
    block = bucket.get("PublicAccessBlockConfiguration", {})
    for flag in ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"]:
        check(block.get(flag) is True, f"bucket public access block {flag} is off")
    check(bucket.get("VersioningConfiguration", {}).get("Status") == "Enabled", "versioning off")
    check("BucketEncryption" in bucket, "bucket has no default encryption")

    lambdas = bucket.get("NotificationConfiguration", {}).get("LambdaConfigurations", [])
    check(len(lambdas) == 1, f"bucket has {len(lambdas)} Lambda notifications, wants 1")
    for n in lambdas:
        rules = n.get("Filter", {}).get("S3Key", {}).get("Rules", [])
        check(
            rules == [{"Name": "prefix", "Value": "dicom/"}],
            f"notification filter is {rules}, wants prefix dicom/ only",
        )
        check(n.get("Event") == "s3:ObjectCreated:*", f"notification event is {n.get('Event')}")

    policy = cfn["Resources"]["DicomBucketPolicy"]["Properties"]["PolicyDocument"]
    tls = [
        s
        for s in policy["Statement"]
        if s["Effect"] == "Deny"
        and s.get("Condition", {}).get("Bool", {}).get("aws:SecureTransport") == "false"
    ]
    check(len(tls) == 1, "bucket policy does not deny plain HTTP")


def check_ingest_failures(cfn):
    configs = [
        r["Properties"]
        for r in cfn["Resources"].values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig"
    ]
    check(len(configs) == 1, "on-object-created has no EventInvokeConfig")
    for c in configs:
        check(c.get("MaximumRetryAttempts") == 2, "ingest retries are not 2")
        dest = c.get("DestinationConfig", {}).get("OnFailure", {}).get("Destination")
        check(dest == {"Fn::GetAtt": ["IngestDeadLetterQueue", "Arn"]}, "ingest failures go nowhere")


def main():
    # The translator wants a region for ARNs; it calls no AWS API.
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    logging.disable(logging.WARNING)
    path = sys.argv[1] if len(sys.argv) > 1 else "template.yaml"
    root = os.path.dirname(os.path.abspath(path))
    template = yaml_parse(open(path).read())

    for cache_seconds in [0, 30]:
        cfn = translate(template, cache_seconds)
        check_api(cfn, cache_seconds)
    check_functions(template, cfn, root)
    check_bucket(cfn)
    check_ingest_failures(cfn)

    for f in dict.fromkeys(findings):
        print(f"template: {f}")
    return 1 if findings else 0


if __name__ == "__main__":
    sys.exit(main())

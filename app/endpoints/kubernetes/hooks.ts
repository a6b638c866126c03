// What the HTTPS exchange decider (app/endpoints/https/decider.ts) asks of
// a kubernetes endpoint: the decision with the k8s facets and the event's
// family fields, the refusal as a Status, and the client certificate a
// k8s_client_cert credential presents upstream.
import type { Credential, Decision, HttpFacts, Policy, RequestContext } from "../../policy/types.ts";
import type { GatewayEvent } from "../../events/types.ts";
import { k8sFamily, type K8sFacts } from "../../families/k8s.ts";
import { judgeKubernetes } from "./judge.ts";
import { statusResponse } from "./status.ts";
import type { ClientCertificate } from "./client-cert.ts";

export interface KubernetesJudged {
  decision: Decision;
  facts: K8sFacts;
  /** The event's family, summary and structured action (the k8s facets). */
  event: Pick<GatewayEvent, "family" | "summary" | "action">;
}

export function kubernetesDecision(policy: Policy, ctx: RequestContext, http: HttpFacts, target: string): KubernetesJudged {
  const { decision, facts } = judgeKubernetes(policy, ctx, http, target);
  return { decision, facts, event: { family: "k8s", summary: k8sFamily.summary(facts), action: k8sFamily.action(facts) } };
}

export function kubernetesRefusal(status: number, rule: string | undefined, reason: string, close: boolean, judged: KubernetesJudged): Uint8Array {
  return statusResponse(status, rule, reason, close, judged.facts.info);
}

/** The certificate and key a k8s_client_cert credential presents (its key is the secret); undefined for other types. */
export function kubernetesClientCert(credential: Credential, secret: string): ClientCertificate | undefined {
  if (credential.type !== "k8s_client_cert") return undefined;
  const certPem = credential.settings.certificate_pem;
  if (certPem === undefined) throw new Error(`credential ${credential.ref} has no certificate`);
  return { ref: credential.ref, certPem, keyPem: secret };
}

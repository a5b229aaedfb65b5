//! One ACME order, with instant-acme: load or create the account, create the order,
//! answer each authorization's challenge (TLS-ALPN-01 or HTTP-01), finalize with a fresh
//! key, download the chain. The caller holds the order lock.

use std::fs;
use std::time::Duration;

use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};

use super::{Challenge, Inner, cert, self_signed, store};

/// Why an order failed, in words for the app log.
pub(crate) type OrderError = String;

fn e(what: &str) -> impl Fn(instant_acme::Error) -> OrderError + '_ {
    move |err| format!("{what}: {err}")
}

/// Places one order for the settings' domains and returns the PEM bundle (key, chain).
pub(crate) async fn order(inner: &Inner) -> Result<String, OrderError> {
    let mut answered = Vec::new();
    let result = order_inner(inner, &mut answered).await;
    // Whatever happened, the challenge answers are no longer needed.
    for (kind, name) in answered {
        inner.forget_challenge(kind, &name);
    }
    result
}

async fn account(inner: &Inner) -> Result<Account, OrderError> {
    let s = &inner.settings;
    let builder = || match &s.ca_file {
        Some(path) => Account::builder_with_root(path)
            .map_err(|err| format!("reading BLARGH_ACME_CA_FILE {}: {err}", path.display())),
        None => Account::builder().map_err(e("building the ACME HTTP client")),
    };
    let path = inner.store.account_path(&s.directory);
    if let Ok(json) = fs::read(&path) {
        match serde_json::from_slice::<AccountCredentials>(&json) {
            Ok(creds) => {
                return builder()?
                    .from_credentials(creds)
                    .await
                    .map_err(e("restoring the ACME account"));
            }
            Err(err) => eprintln!(
                "blargh tls: ignoring unreadable ACME account {}: {err}; creating a new one",
                path.display()
            ),
        }
    }
    let contact = s.contact.as_ref().map(|c| {
        if c.contains(':') {
            c.clone()
        } else {
            format!("mailto:{c}")
        }
    });
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, creds) = builder()?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            s.directory.clone(),
            None,
        )
        .await
        .map_err(e(&format!("creating an ACME account at {}", s.directory)))?;
    let json = serde_json::to_vec(&creds).map_err(|err| err.to_string())?;
    store::write_atomic(&path, &json)
        .map_err(|err| format!("saving the ACME account to {}: {err}", path.display()))?;
    eprintln!(
        "blargh tls: created an ACME account at {} (saved to {})",
        s.directory,
        path.display()
    );
    Ok(account)
}

async fn order_inner(
    inner: &Inner,
    answered: &mut Vec<(&'static str, String)>,
) -> Result<String, OrderError> {
    let s = &inner.settings;
    let account = account(inner).await?;
    let ids: Vec<Identifier> = s.domains.iter().cloned().map(Identifier::Dns).collect();
    let mut order = account
        .new_order(&NewOrder::new(&ids))
        .await
        .map_err(e("creating the order"))?;
    let mut authzs = order.authorizations();
    while let Some(authz) = authzs.next().await {
        let mut authz = authz.map_err(e("fetching an authorization"))?;
        match authz.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(format!("authorization in state {other:?}")),
        }
        let domain = authz.identifier().to_string();
        let kind = match s.challenge {
            Challenge::TlsAlpn01 => ChallengeType::TlsAlpn01,
            Challenge::Http01 => ChallengeType::Http01,
        };
        let mut challenge = authz
            .challenge(kind.clone())
            .ok_or_else(|| format!("the CA offers no {kind:?} challenge for {domain}"))?;
        let key_auth = challenge.key_authorization();
        match s.challenge {
            Challenge::TlsAlpn01 => {
                let pem = self_signed::alpn_challenge(&domain, key_auth.digest().as_ref())
                    .map_err(|err| err.to_string())?;
                let loaded = cert::load(pem.as_bytes(), true).map_err(|err| err.to_string())?;
                inner.answer_challenge("alpn", &domain, pem.as_bytes(), Some(loaded))?;
                answered.push(("alpn", domain.clone()));
            }
            Challenge::Http01 => {
                let token = challenge.token.clone();
                inner.answer_challenge("http", &token, key_auth.as_str().as_bytes(), None)?;
                answered.push(("http", token));
            }
        }
        challenge.set_ready().await.map_err(e(&format!(
            "telling the CA the challenge for {domain} is ready"
        )))?;
    }
    let retry = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(Duration::from_secs(120));
    let status = order
        .poll_ready(&retry)
        .await
        .map_err(e("waiting for validation"))?;
    if status != OrderStatus::Ready {
        let why = order
            .state()
            .error
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        return Err(format!(
            "order is {status:?} after validation (not Ready) {why}"
        ));
    }
    let key_pem = order.finalize().await.map_err(e("finalizing the order"))?;
    let chain_pem = order
        .poll_certificate(&retry)
        .await
        .map_err(e("downloading the certificate"))?;
    Ok(format!("{key_pem}{chain_pem}"))
}

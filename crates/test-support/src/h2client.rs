//! An HTTP/2 load that behaves as browsers do: hyper's pooled client (h2c with prior
//! knowledge) opens a new connection when the one it used got GOAWAY, and a GET that
//! failed because GOAWAY came before its stream was accepted is sent again (RFC 9113 §6.8:
//! such a request was not processed and can be retried; hyper's pool does not do it
//! itself). Those are counted apart, as `resent`. h2load, the load the issue names,
//! stops a connection at GOAWAY and never reconnects (see [`crate::h2load`]); this one keeps
//! the load on across any number of activations.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

/// A running load; stopped by [`H2Client::finish`].
#[derive(Debug)]
pub struct H2Client {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<H2Counts>>,
}

/// What the load saw.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct H2Counts {
    /// Responses with a 2xx status and a whole body.
    pub ok: u64,
    /// Requests that failed (error, or a status other than 2xx).
    pub failed: u64,
    /// Requests sent again because GOAWAY refused them before they were processed.
    pub resent: u64,
    /// The first few failures, for the test's message.
    pub errors: Vec<String>,
}

impl H2Client {
    /// Starts `workers` request loops, each sending `GET url` again as soon as the last one
    /// is answered, over one shared HTTP/2 client.
    pub fn start(url: &str, workers: usize) -> H2Client {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let url: hyper::Uri = url.parse().expect("a URL");
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let client: Client<_, Empty<Bytes>> = Client::builder(TokioExecutor::new())
                    .http2_only(true)
                    .build_http();
                let ok = Arc::new(AtomicU64::new(0));
                let failed = Arc::new(AtomicU64::new(0));
                let resent = Arc::new(AtomicU64::new(0));
                let errors = Arc::new(std::sync::Mutex::new(Vec::new()));
                let mut tasks = Vec::new();
                for _ in 0..workers {
                    let (client, url, flag) = (client.clone(), url.clone(), flag.clone());
                    let (ok, failed, errors) = (ok.clone(), failed.clone(), errors.clone());
                    let resent = resent.clone();
                    tasks.push(tokio::spawn(async move {
                        while !flag.load(Ordering::SeqCst) {
                            let outcome = tokio::time::timeout(Duration::from_secs(10), async {
                                let mut tries = 0;
                                let res = loop {
                                    match client.get(url.clone()).await {
                                        Ok(res) => break res,
                                        Err(e) if tries < 3 && refused_by_goaway(&e) => {
                                            tries += 1;
                                            resent.fetch_add(1, Ordering::SeqCst);
                                        }
                                        Err(e) => return Err(format!("{e:?}")),
                                    }
                                };
                                let status = res.status();
                                let body = res
                                    .into_body()
                                    .collect()
                                    .await
                                    .map_err(|e| format!("body: {e:?}"))?;
                                if !status.is_success() {
                                    return Err(format!("status {status}"));
                                }
                                Ok(body.to_bytes().len())
                            })
                            .await
                            .unwrap_or_else(|_| Err("no answer within 10 s".into()));
                            match outcome {
                                Ok(_) => {
                                    ok.fetch_add(1, Ordering::SeqCst);
                                }
                                Err(e) => {
                                    failed.fetch_add(1, Ordering::SeqCst);
                                    let mut errs = errors.lock().unwrap();
                                    if errs.len() < 5 {
                                        errs.push(e);
                                    }
                                }
                            }
                        }
                    }));
                }
                for t in tasks {
                    let _ = t.await;
                }
                H2Counts {
                    ok: ok.load(Ordering::SeqCst),
                    failed: failed.load(Ordering::SeqCst),
                    resent: resent.load(Ordering::SeqCst),
                    errors: errors.lock().unwrap().clone(),
                }
            })
        });
        H2Client {
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the loops (each finishes the request it is on) and returns the counts.
    pub fn finish(mut self) -> H2Counts {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .expect("finish runs once")
            .join()
            .expect("the load thread")
    }
}

/// A request that failed while being sent because the connection had received GOAWAY
/// (graceful, `NO_ERROR`): the server did not process it.
fn refused_by_goaway(e: &hyper_util::client::legacy::Error) -> bool {
    let text = format!("{e:?}");
    text.contains("SendRequest") && text.contains("GoAway") && text.contains("NO_ERROR")
}

impl Drop for H2Client {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

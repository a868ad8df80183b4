//! Making a connection to the one server a store uses (not a cluster): the server the URL names,
//! or the master its sentinels name now. Each new connection, the pool's and the listening
//! thread's, comes from here, so each follows a failover: it asks the sentinels where the
//! master is (SENTINEL GET-MASTER-ADDR-BY-NAME, the sentinels in turn, the one that answered
//! last first), connects (over TLS if asked), authenticates, selects the database, and checks
//! with ROLE that the server is a master (a sentinel may not know yet of a failover). Nothing
//! here retries: a failed connection fails the call, and the pool's backoff spaces the next
//! attempts.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ::redis::{ErrorKind as K, RedisError, ServerErrorKind, Value};

use super::conn::{Link, NoConnection};
use super::stream::Stream;
use super::tls::Tls;
use super::RedisConfig;
use crate::error::Result;

enum Way {
    /// The server the URL names.
    Direct(String, u16),
    /// The master a sentinel of these names.
    Sentinel { sentinels: Vec<(String, u16)>, master: String, password: Option<String>, first: AtomicUsize },
}

pub(super) struct Dialer {
    way: Way,
    tls: Option<Tls>,
    username: Option<String>,
    password: Option<String>,
    db: i64,
}

impl Dialer {
    /// The dialer of a single server or a sentinel-watched master (not a cluster); reads the TLS
    /// files now.
    pub fn new(config: &RedisConfig) -> Result<Dialer> {
        let way = match &config.sentinel_master {
            Some(master) => Way::Sentinel {
                sentinels: config.nodes.clone(),
                master: master.clone(),
                password: config.sentinel_password.clone(),
                first: AtomicUsize::new(0),
            },
            None => {
                let (host, port) = config.nodes.first().cloned().unwrap_or_default();
                Way::Direct(host, port)
            }
        };
        Ok(Dialer {
            way,
            tls: config.tls.as_ref().map(Tls::new).transpose()?,
            username: config.username.clone(),
            password: config.password.clone(),
            db: config.db,
        })
    }

    /// A connection ready for calls, made by `deadline`, or why none could be.
    pub fn dial(&self, deadline: Instant) -> std::result::Result<Link, NoConnection> {
        match &self.way {
            Way::Direct(host, port) => self.connect(host, *port, deadline),
            Way::Sentinel { master, .. } => {
                let (host, port) = self.ask_sentinels(deadline)?;
                let at = |no: NoConnection| match no {
                    // Most likely a failover under way: the sentinels will name another.
                    NoConnection::Refused | NoConnection::Silent | NoConnection::Other(_) => NoConnection::Other(
                        RedisError::from((K::Io, "the master the sentinels named did not answer", {
                            format!("{master} at {host}:{port}: {}", no.short())
                        })),
                    ),
                    other => other,
                };
                let mut link = self.connect(&host, port, deadline).map_err(at)?;
                let role: Value = ::redis::cmd("ROLE").query(&mut link).map_err(|e| at(NoConnection::of(e)))?;
                match role {
                    Value::Array(items) if matches!(items.first(), Some(Value::BulkString(b)) if b == b"master") => {
                        link.ready();
                        Ok(link)
                    }
                    _ => Err(NoConnection::Answered(RedisError::from((
                        K::Server(ServerErrorKind::ReadOnly),
                        "not a master (a failover is under way)",
                        format!("the sentinels named {host}:{port} as the master {master}, but it is a replica"),
                    )))),
                }
            }
        }
    }

    /// Connects to `host:port`, authenticates and selects the database; the link stays
    /// harmless (the dialer may still ask ROLE) until `ready`.
    fn connect(&self, host: &str, port: u16, deadline: Instant) -> std::result::Result<Link, NoConnection> {
        let stream = Stream::open(host, port, self.tls.as_ref(), deadline)?;
        let tls = matches!(stream, Stream::Tls(_));
        let mut link = Link::new(stream, self.db, deadline);
        let no = |e: RedisError| if e.is_timeout() { NoConnection::Silent } else { NoConnection::of(e) };
        if tls {
            // A server that wants a client certificate it did not get says so only now, after
            // the client's side of the handshake: a PING hears it (or NOAUTH: TLS is fine).
            if let Err(e) = ::redis::cmd("PING").query::<()>(&mut link) {
                if let Some(refused) = link.tls_refusal() {
                    return Err(refused);
                }
                if e.code() != Some("NOAUTH") {
                    return Err(no(e));
                }
            }
        }
        if let Some(password) = &self.password {
            let mut auth = ::redis::cmd("AUTH");
            if let Some(user) = &self.username {
                auth.arg(user);
            }
            auth.arg(password);
            auth.query::<()>(&mut link).map_err(|e| match no(e) {
                // Any refusal of AUTH is about the credentials.
                NoConnection::Answered(e) => NoConnection::Answered(RedisError::from((
                    K::AuthenticationFailed,
                    "the server refused the user name or password",
                    e.detail().unwrap_or_default().to_owned(),
                ))),
                other => other,
            })?;
        }
        if self.db != 0 {
            ::redis::cmd("SELECT").arg(self.db).query::<()>(&mut link).map_err(no)?;
        }
        if matches!(self.way, Way::Direct(..)) {
            link.ready();
        }
        Ok(link)
    }

    /// Where the sentinels say the master is: the first sentinel that answers with an address;
    /// each gets an equal share of what is left of the time.
    fn ask_sentinels(&self, deadline: Instant) -> std::result::Result<(String, u16), NoConnection> {
        let Way::Sentinel { sentinels, master, password, first } = &self.way else { unreachable!() };
        let start = first.load(Ordering::Relaxed);
        let mut failures = Vec::new();
        // Sentinels that said no master has that name, that are not there or that refused us: the
        // URL's to fix.
        let mut wrong = 0;
        // Sentinels whose TLS session failed: tried past (one bad certificate must not stop a
        // failover), and the reason given if no other answers.
        let mut tls = 0;
        for i in 0..sentinels.len() {
            let n = (start + i) % sentinels.len();
            let (host, port) = &sentinels[n];
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let share = Instant::now() + left / (sentinels.len() - i) as u32;
            let answer = Stream::open(host, *port, self.tls.as_ref(), share).and_then(|stream| {
                let mut link = Link::new(stream, 0, share);
                let refusal = |link: &Link, e: RedisError| link.tls_refusal().unwrap_or_else(|| NoConnection::of(e));
                if let Some(password) = password {
                    ::redis::cmd("AUTH").arg(password).query::<()>(&mut link).map_err(|e| refusal(&link, e))?;
                }
                ::redis::cmd("SENTINEL")
                    .arg("GET-MASTER-ADDR-BY-NAME")
                    .arg(master)
                    .query::<Option<(String, u16)>>(&mut link)
                    .map_err(|e| refusal(&link, e))
            });
            match answer {
                Ok(Some(at)) => {
                    first.store(n, Ordering::Relaxed);
                    return Ok(at);
                }
                Ok(None) => {
                    wrong += 1;
                    failures.push(format!("sentinel {host}:{port} knows no master {master:?}"));
                }
                Err(NoConnection::Tls(e)) => {
                    tls += 1;
                    failures.push(format!("sentinel {host}:{port}: {e}"));
                }
                Err(no) => {
                    // Not there, or refusing the password (or its absence): the URL's to fix.
                    if matches!(no, NoConnection::Refused | NoConnection::Unresolved(_) | NoConnection::Answered(_)) {
                        wrong += 1;
                    }
                    failures.push(format!("sentinel {host}:{port}: {}", no.short()));
                }
            }
        }
        if failures.is_empty() {
            return Err(NoConnection::Silent);
        }
        if tls > 0 && wrong + tls == sentinels.len() {
            return Err(NoConnection::Tls(failures.join("; ")));
        }
        Err(NoConnection::NoMaster { url_to_fix: wrong == sentinels.len(), why: failures.join("; ") })
    }
}

impl NoConnection {
    /// In a few words, for a list of failures.
    fn short(&self) -> String {
        match self {
            NoConnection::Unresolved(e) => format!("does not resolve ({e})"),
            NoConnection::Refused => "connection refused".into(),
            NoConnection::Silent => "no answer in time".into(),
            NoConnection::Tls(e) => format!("TLS refused ({e})"),
            NoConnection::NoMaster { why, .. } => why.clone(),
            NoConnection::Answered(e) | NoConnection::Other(e) => e.to_string(),
        }
    }
}

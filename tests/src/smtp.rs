//! A real SMTP server on loopback (mailin-embedded) that keeps what it
//! receives, for the tests of email delivery.

use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// One received email.
#[derive(Debug, Clone, Default)]
pub struct Mail {
    /// The envelope sender.
    pub from: String,
    /// The envelope recipients.
    pub to: Vec<String>,
    /// The message as sent: headers and body.
    pub data: String,
}

#[derive(Clone, Default)]
struct Mailbox {
    mails: Arc<Mutex<Vec<Mail>>>,
    current: Mail,
    /// How long it takes to accept a message once its data is in.
    delay: Duration,
    /// Messages whose data has begun to arrive.
    started: Arc<AtomicUsize>,
}

impl mailin_embedded::Handler for Mailbox {
    fn data_start(
        &mut self,
        _domain: &str,
        from: &str,
        _is8bit: bool,
        to: &[String],
    ) -> mailin_embedded::Response {
        self.current = Mail {
            from: from.to_string(),
            to: to.to_vec(),
            data: String::new(),
        };
        self.started.fetch_add(1, Ordering::SeqCst);
        mailin_embedded::response::OK
    }

    fn data(&mut self, buf: &[u8]) -> std::io::Result<()> {
        self.current.data.push_str(&String::from_utf8_lossy(buf));
        Ok(())
    }

    fn data_end(&mut self) -> mailin_embedded::Response {
        std::thread::sleep(self.delay);
        self.mails
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(self.current.clone());
        mailin_embedded::response::OK
    }

    fn helo(&mut self, _ip: IpAddr, _domain: &str) -> mailin_embedded::Response {
        mailin_embedded::response::OK
    }
}

/// Starts an SMTP server on a free loopback port; returns the port and what
/// it receives. The server thread lives until the test process ends.
pub fn smtp_server() -> (u16, Arc<Mutex<Vec<Mail>>>) {
    let (port, mails, _) = slow_smtp_server(Duration::ZERO);
    (port, mails)
}

/// [`smtp_server`] that takes `delay` to accept each message (a slow
/// provider); also returns how many messages have begun to arrive.
pub fn slow_smtp_server(delay: Duration) -> (u16, Arc<Mutex<Vec<Mail>>>, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| panic!("{e}"));
    let port = listener
        .local_addr()
        .unwrap_or_else(|e| panic!("{e}"))
        .port();
    let mailbox = Mailbox {
        delay,
        ..Mailbox::default()
    };
    let mails = mailbox.mails.clone();
    let started = mailbox.started.clone();
    let mut server = mailin_embedded::Server::new(mailbox);
    server
        .with_name("mx.example.com")
        .with_ssl(mailin_embedded::SslConfig::None)
        .unwrap_or_else(|e| panic!("{e}"))
        .with_tcp_listener(listener);
    std::thread::spawn(move || {
        let _ = server.serve();
    });
    (port, mails, started)
}

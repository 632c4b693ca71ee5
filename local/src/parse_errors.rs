//! A request hyper cannot parse gets hyper's own answer, before any of Lambent runs: a bare
//! `400 Bad Request` with no body. A header value holding a control character (`Idempotency-Key: a\x7fb`;
//! httparse accepts only tab, space to `~`, and bytes from 0x80 in a value) is the common case, and a client
//! reading errors as DRF-shaped JSON learns nothing from it. [`ParseErrors`] wraps a connection and replaces
//! that bare answer with a JSON one naming the header, in the API's shape:
//! `{"Idempotency-Key": ["Must be 1 to 255 visible ASCII characters."]}`.
//!
//! It recognises hyper's answer by its exact form — status 400, `content-length: 0`, the whole head in one
//! write (hyper writes its parse-error answer that way and closes the connection after it); every answer of
//! the app has a JSON body. The header is found in the last bytes the connection read ([`RECENT`]): the last
//! line that has a name, a colon and a byte no header value may hold.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// How many of the last bytes read are kept to find the offending header line in (hyper's default limit on a
/// request's head is larger, but a head whose bad line is further back is still answered, without its name).
const RECENT: usize = 16 * 1024;

/// The start of hyper's answer to a request it could not parse (`Server::on_error`).
const BARE_400: &[u8] = b"HTTP/1.1 400 Bad Request\r\n";

/// A connection whose bare parse-error answer becomes a JSON one.
#[derive(Debug)]
pub struct ParseErrors<T> {
    io: T,
    recent: Vec<u8>,
    /// The JSON answer being written in place of hyper's, and how many bytes hyper's write is told it took.
    replacing: Option<(Vec<u8>, usize)>,
}

impl<T> ParseErrors<T> {
    pub fn new(io: T) -> Self {
        Self { io, recent: Vec::new(), replacing: None }
    }
}

/// Whether `buf` is hyper's whole parse-error answer: a 400 head with no body, in one write.
fn is_bare_400(buf: &[u8]) -> bool {
    buf.starts_with(BARE_400)
        && buf.ends_with(b"\r\n\r\n")
        && buf.windows(b"\r\ncontent-length: 0\r\n".len()).any(|w| w == b"\r\ncontent-length: 0\r\n")
}

/// The name of the last header line in `recent` whose value holds a byte httparse refuses.
fn offending_header(recent: &[u8]) -> Option<String> {
    recent.split(|b| *b == b'\n').rev().find_map(|line| {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let colon = line.iter().position(|b| *b == b':')?;
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        let valid_name = !name.is_empty() && name.iter().all(|b| b.is_ascii_graphic() && *b != b':');
        let bad_value = value.iter().any(|b| (*b < 0x20 && *b != b'\t') || *b == 0x7f);
        (valid_name && bad_value).then(|| String::from_utf8_lossy(name).into_owned())
    })
}

/// The JSON answer for a request whose head could not be parsed.
fn answer(recent: &[u8]) -> Vec<u8> {
    let body = match offending_header(recent) {
        // The message the `Idempotency-Key` extractor gives, for any header.
        Some(name) => serde_json::json!({ name: ["Must be 1 to 255 visible ASCII characters."] }),
        None => serde_json::json!({"detail": "Malformed HTTP request."}),
    }
    .to_string();
    format!(
        "HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

impl<T: AsyncRead + Unpin> AsyncRead for ParseErrors<T> {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        ready!(Pin::new(&mut this.io).poll_read(cx, buf))?;
        this.recent.extend_from_slice(&buf.filled()[before..]);
        if this.recent.len() > RECENT {
            let cut = this.recent.len() - RECENT;
            this.recent.drain(..cut);
        }
        Poll::Ready(Ok(()))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for ParseErrors<T> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if this.replacing.is_none() && is_bare_400(buf) {
            this.replacing = Some((answer(&this.recent), buf.len()));
        }
        let Some((bytes, claimed)) = &mut this.replacing else { return Pin::new(&mut this.io).poll_write(cx, buf) };
        while !bytes.is_empty() {
            let written = ready!(Pin::new(&mut this.io).poll_write(cx, bytes))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            bytes.drain(..written);
        }
        let claimed = *claimed;
        this.replacing = None;
        Poll::Ready(Ok(claimed))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    // Not vectored: hyper then writes each head whole in one buffer, which is how its parse-error answer is
    // recognised (see `is_bare_400`).
    fn is_write_vectored(&self) -> bool {
        false
    }
}

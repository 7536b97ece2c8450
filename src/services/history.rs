//! Reading the history queries of both clients: cursors and pages. Pure functions, so that they can
//! be fuzzed (`fuzz/`) and reasoned about apart from the database.

use crate::error::AppError;
use crate::services::messages::PAGE_SIZE;

/// The cursor of the v3 client's `GET /api/message/v2/history?msgid=`: messages older than this id;
/// no cursor (absent or blank) means the newest page.
///
/// # Errors
/// [`AppError::Invalid`] when `msgid` is not an integer.
pub fn parse_cursor(msgid: Option<&str>) -> Result<Option<i64>, AppError> {
    match msgid.map(str::trim).filter(|m| !m.is_empty()) {
        Some(id) => id
            .parse::<i64>()
            .map(Some)
            .map_err(|_| AppError::invalid("参数 msgid 无效")),
        None => Ok(None),
    }
}

/// The page number of the Laravel-era client's `GET /api/history/message?current=` (from 1).
///
/// # Errors
/// [`AppError::Invalid`] for anything but a positive integer.
pub fn parse_page(current: &str) -> Result<u64, AppError> {
    current
        .trim()
        .parse()
        .ok()
        .filter(|c| *c >= 1)
        .ok_or_else(|| AppError::invalid("无效的页码"))
}

/// Which messages a Laravel-era history page holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegacyWindow {
    /// How many of the newest messages to skip.
    pub offset: u64,
    /// The room's message count the pages are counted against (echoed to the client).
    pub total: u64,
}

/// The window of page `current` in a room of `count` messages, for a client that saw `total`
/// messages at page 1 (anything unusable means "now": `count`). Messages posted since then shift the
/// window, so pages neither repeat nor skip.
///
/// The offset never passes `count`: a page beyond the last is empty whatever its number, so a page
/// number of any size stays a small offset by the time it reaches SQL (sea-query binds offsets as
/// `i64` and panics on anything larger).
pub fn legacy_window(current: u64, total: &str, count: u64) -> LegacyWindow {
    let total = total
        .trim()
        .parse::<u64>()
        .ok()
        .filter(|t| *t > 0 && *t <= count)
        .unwrap_or(count);
    let offset = current
        .saturating_sub(1)
        .saturating_mul(PAGE_SIZE)
        .saturating_add(count - total)
        .min(count);
    LegacyWindow { offset, total }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_and_pages() {
        assert_eq!(parse_cursor(None).unwrap(), None);
        assert_eq!(parse_cursor(Some("  ")).unwrap(), None);
        assert_eq!(parse_cursor(Some(" 42 ")).unwrap(), Some(42));
        assert!(parse_cursor(Some("4x")).is_err());
        assert_eq!(parse_page("3").unwrap(), 3);
        assert!(parse_page("0").is_err() && parse_page("-1").is_err());
    }

    #[test]
    fn windows_hold_their_place_as_messages_arrive() {
        assert_eq!(
            legacy_window(1, "0", 50),
            LegacyWindow {
                offset: 0,
                total: 50
            }
        );
        // Five messages arrived since page 1: page 2 skips them.
        assert_eq!(legacy_window(2, "45", 50).offset, PAGE_SIZE + 5);
        assert_eq!(legacy_window(2, "999", 50).total, 50);
        // Past the last page: the offset stops at the room's end.
        assert_eq!(legacy_window(u64::MAX, "1", 50).offset, 50);
        assert_eq!(legacy_window(461_168_601_842_738_792, "0", 7).offset, 7);
    }
}

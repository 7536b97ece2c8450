//! 大白, the customer-service robot.
//!
//! The web clients expect replies in the shape of the tuling123 API (`code` 100000 = text, 200000 =
//! text + url). chatroom answers from a small built-in responder, so the robot works on a machine with
//! no internet; when an upstream URL is configured it is asked first, with a short timeout, and the
//! built-in responder covers for it when it fails.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use serde::{Deserialize, Serialize};

use crate::text::escape_html;

/// A plain text reply.
pub const CODE_TEXT: u32 = 100_000;
const MAX_QUESTION_CHARS: usize = 200;

/// One reply, serialized as the JSON string the clients parse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RobotReply {
    pub code: u32,
    pub text: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

impl RobotReply {
    /// A text reply.
    pub fn text(text: impl Into<String>) -> Self {
        Self {
            code: CODE_TEXT,
            text: text.into(),
            url: None,
        }
    }

    /// The JSON text the clients `JSON.parse`.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self)
            .unwrap_or_else(|_| format!("{{\"code\":{CODE_TEXT},\"text\":\"\"}}"))
    }
}

/// Answers robot questions.
#[derive(Clone)]
pub struct Robot {
    upstream: Option<(reqwest::Client, String)>,
}

impl Robot {
    /// A robot that asks `upstream` first, when given.
    ///
    /// # Errors
    /// If the HTTP client cannot be built.
    pub fn new(upstream: Option<String>) -> Result<Self, reqwest::Error> {
        let upstream = match upstream {
            Some(url) => Some((
                reqwest::Client::builder()
                    .timeout(Duration::from_secs(3))
                    .build()?,
                url,
            )),
            None => None,
        };
        Ok(Self { upstream })
    }

    /// The reply to `question` from the user `asker`.
    pub async fn reply(&self, asker: &str, question: &str) -> RobotReply {
        let question: String = question.trim().chars().take(MAX_QUESTION_CHARS).collect();
        if let Some((client, url)) = &self.upstream {
            match ask_upstream(client, url, asker, &question).await {
                Ok(reply) => return reply,
                Err(e) => tracing::warn!(error = %e, "robot upstream failed; answering offline"),
            }
        }
        offline_reply(&question)
    }
}

async fn ask_upstream(
    client: &reqwest::Client,
    url: &str,
    asker: &str,
    question: &str,
) -> anyhow::Result<RobotReply> {
    let body = serde_json::json!({ "info": question, "userid": asker });
    let reply: RobotReply = client
        .post(url)
        .json(&body)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    // The clients render the text as HTML: never pass markup through from a third party.
    let url = reply
        .url
        .filter(|u| u.starts_with("https://") || u.starts_with("http://"))
        .map(|u| escape_html(&u));
    Ok(RobotReply {
        code: reply.code,
        text: escape_html(&reply.text),
        url,
    })
}

/// The built-in responder: a few canned topics, and an honest "still learning" otherwise.
pub fn offline_reply(question: &str) -> RobotReply {
    let q = question.to_lowercase();
    let has = |words: &[&str]| words.iter().any(|w| q.contains(w));
    // Beijing time (UTC+8, no daylight saving), the clients' audience.
    let beijing = Utc::now() + TimeDelta::hours(8);
    let text = if q.is_empty() {
        "你好像什么都没说哦～".to_owned()
    } else if has(&["你好", "您好", "hello", "hi", "嗨", "哈喽"]) {
        "你好呀，我是大白，有什么可以帮你的吗？".to_owned()
    } else if has(&["几点", "时间", "time"]) {
        format!("现在是北京时间 {}。", beijing.format("%H:%M"))
    } else if has(&["日期", "今天", "几号", "date"]) {
        format!("今天是 {}。", beijing.format("%Y年%m月%d日"))
    } else if has(&["你是谁", "名字", "who are you"]) {
        "我是大白，聊天室的客服机器人。".to_owned()
    } else if has(&["帮助", "help", "怎么用", "功能"]) {
        "在首页进入聊天室1或聊天室2和大家聊天；在搜索页找到用户并加为好友后可以私聊；头像可以在个人页修改。"
            .to_owned()
    } else if has(&["谢谢", "多谢", "thank"]) {
        "不客气～".to_owned()
    } else if has(&["再见", "拜拜", "bye"]) {
        "再见，欢迎常来聊天！".to_owned()
    } else if has(&["天气", "weather"]) {
        "我现在连不上外网，查不到天气呢。".to_owned()
    } else if has(&["笑话", "joke"]) {
        "程序员最讨厌的两件事：写文档，和别人不写文档。".to_owned()
    } else {
        format!(
            "你说的是「{}」吗？这个我还在学习中。",
            escape_html(question)
        )
    };
    RobotReply::text(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_offline_in_the_tuling_shape() {
        let reply = offline_reply("你好");
        assert_eq!(reply.code, CODE_TEXT);
        assert!(reply.text.contains("大白"));
        let parsed: serde_json::Value = serde_json::from_str(&reply.to_json()).unwrap();
        assert_eq!(parsed["code"], 100_000);
    }

    #[test]
    fn never_echoes_markup() {
        let reply = offline_reply("<script>alert(1)</script>");
        assert!(!reply.text.contains('<'));
        assert!(reply.text.contains("&lt;script&gt;"));
    }
}

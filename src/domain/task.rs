//! The values a task is made of, each with a parsing constructor that enforces the API's
//! rules. Errors are plain reasons; the caller names the input field they belong to.

use chrono::{DateTime, Utc};

/// Most characters in a title.
pub const TITLE_MAX_CHARS: usize = 200;
/// Most characters in a description.
pub const DESCRIPTION_MAX_CHARS: usize = 1000;
/// The priority a task gets when none is given.
pub const DEFAULT_PRIORITY: i16 = 3;

/// A task title: trimmed, not empty, at most 200 characters (Unicode scalar values).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Title(String);

impl Title {
    pub fn parse(raw: &str) -> Result<Self, String> {
        super::text::check_storable(raw)?;
        let trimmed = raw.trim();
        if trimmed.is_empty() {
            return Err("The title must not be empty.".into());
        }
        let chars = trimmed.chars().count();
        if chars > TITLE_MAX_CHARS {
            return Err(format!(
                "The title is {chars} characters long; at most {TITLE_MAX_CHARS} are allowed."
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A task description: at most 1000 characters. Stored as given; an empty or blank
/// description is no description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Description(String);

impl Description {
    pub fn parse(raw: &str) -> Result<Option<Self>, String> {
        super::text::check_storable(raw)?;
        if raw.trim().is_empty() {
            return Ok(None);
        }
        let chars = raw.chars().count();
        if chars > DESCRIPTION_MAX_CHARS {
            return Err(format!(
                "The description is {chars} characters long; at most {DESCRIPTION_MAX_CHARS} are allowed."
            ));
        }
        Ok(Some(Self(raw.to_owned())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A priority from 1 (lowest) to 5 (highest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Priority(i16);

impl Priority {
    pub fn parse(raw: i32) -> Result<Self, String> {
        match i16::try_from(raw) {
            Ok(value @ 1..=5) => Ok(Self(value)),
            _ => Err(format!("The priority must be from 1 to 5, not {raw}.")),
        }
    }

    pub fn value(self) -> i16 {
        self.0
    }
}

impl Default for Priority {
    fn default() -> Self {
        Self(DEFAULT_PRIORITY)
    }
}

/// Everything needed to create a task.
#[derive(Debug, Clone)]
pub struct NewTask {
    pub title: Title,
    pub description: Option<Description>,
    pub priority: Priority,
    pub due_at: Option<DateTime<Utc>>,
    pub completed: bool,
}

/// A partial update: `None` leaves a field alone; `Some(None)` clears a nullable field.
#[derive(Debug, Clone, Default)]
pub struct TaskPatch {
    pub title: Option<Title>,
    pub description: Option<Option<Description>>,
    pub priority: Option<Priority>,
    pub due_at: Option<Option<DateTime<Utc>>>,
    pub completed: Option<bool>,
}

impl TaskPatch {
    pub fn is_empty(&self) -> bool {
        self.title.is_none()
            && self.description.is_none()
            && self.priority.is_none()
            && self.due_at.is_none()
            && self.completed.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn titles_are_trimmed_and_counted_in_characters() {
        assert_eq!(Title::parse("  milk  ").map(|t| t.0), Ok("milk".to_owned()));
        assert!(Title::parse(" \t\n").is_err());
        assert!(
            Title::parse(&"é".repeat(200)).is_ok(),
            "200 two-byte characters fit"
        );
        assert!(Title::parse(&"🦀".repeat(201)).is_err());
        assert!(
            Title::parse("milk\0").is_err(),
            "PostgreSQL cannot store NUL"
        );
    }

    #[test]
    fn descriptions_allow_1000_characters_and_blank_means_none() {
        assert!(matches!(Description::parse("   "), Ok(None)));
        assert!(Description::parse(&"x".repeat(1000)).is_ok());
        assert!(Description::parse(&"x".repeat(1001)).is_err());
    }

    #[test]
    fn priorities_are_one_to_five() {
        for ok in 1..=5 {
            assert!(Priority::parse(ok).is_ok());
        }
        for bad in [0, 6, -1, 70_000, i32::MIN] {
            assert!(Priority::parse(bad).is_err(), "{bad}");
        }
    }
}

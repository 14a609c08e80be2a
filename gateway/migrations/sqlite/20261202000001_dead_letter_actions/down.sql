DROP TABLE dead_letter_actions;

"""`python -m videogen ...` is the `videogen` command."""

from videogen import cli

if __name__ == '__main__':
  cli.run()

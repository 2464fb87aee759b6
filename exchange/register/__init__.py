"""The returnee register: records, lifecycle, need-to-know views and border screening."""
